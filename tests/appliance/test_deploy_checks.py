"""`check --deploy` speaks up about who is believed behind a proxy and about what would cross the
network in clear: engines beyond loopback, PostgreSQL without required TLS, SMTP without TLS."""

from __future__ import annotations

import pytest

from appliance import checks
from tests.appliance.test_security import manage


def ids(issues) -> list[str]:
    return [issue.id for issue in issues]


# --- the proxy ---------------------------------------------------------------------------------------


def test_a_proxy_on_this_box_with_gunicorn_on_loopback_is_fine(settings):
    settings.HEARTH_BEHIND_PROXY, settings.HEARTH_WEB_BIND = True, "127.0.0.1"
    assert checks.check_proxy_trust(None) == []
    settings.HEARTH_BEHIND_PROXY, settings.HEARTH_WEB_BIND = False, "0.0.0.0"
    assert checks.check_proxy_trust(None) == []


def test_behind_a_proxy_with_an_open_bind_and_only_loopback_trusted_warns(settings):
    settings.HEARTH_BEHIND_PROXY, settings.HEARTH_WEB_BIND = True, "0.0.0.0"
    settings.HEARTH_TRUSTED_PROXIES = ["127.0.0.1", "::1"]
    assert ids(checks.check_proxy_trust(None)) == ["hearth.W030"]
    settings.HEARTH_TRUSTED_PROXIES = []
    assert ids(checks.check_proxy_trust(None)) == ["hearth.W030"]
    settings.HEARTH_TRUSTED_PROXIES = ["10.0.0.5"]  # the proxy's own address: believed, and only it
    assert checks.check_proxy_trust(None) == []


def test_trusting_every_address_is_an_error(settings):
    settings.HEARTH_BEHIND_PROXY, settings.HEARTH_WEB_BIND = True, "127.0.0.1"
    for everyone in (["0.0.0.0/0"], ["10.0.0.5", "::/0"]):
        settings.HEARTH_TRUSTED_PROXIES = everyone
        assert ids(checks.check_proxy_trust(None)) == ["hearth.E030"]


# --- what crosses the network in clear ---------------------------------------------------------------


def test_engines_beyond_loopback_are_reached_in_clear(settings):
    settings.HEARTH_ENGINE_URLS, settings.HEARTH_ENGINE_HOST = [], "127.0.0.1"
    assert checks.check_engine_transport(None) == []
    settings.HEARTH_ENGINE_URLS = ["http://127.0.0.1:8765", "http://localhost:8766", "http://[::1]:8767"]
    assert checks.check_engine_transport(None) == []
    settings.HEARTH_ENGINE_URLS = ["http://127.0.0.1:8765", "http://gpu2.corp.example:8765"]
    [issue] = checks.check_engine_transport(None)
    assert issue.id == "hearth.W031" and "gpu2.corp.example" in issue.msg and "127.0.0.1" not in issue.msg
    settings.HEARTH_ENGINE_URLS, settings.HEARTH_ENGINE_HOST = [], "192.0.2.40"
    assert ids(checks.check_engine_transport(None)) == ["hearth.W031"]


def _postgres(host: str, **options) -> dict:
    return {"ENGINE": "django.db.backends.postgresql", "NAME": "hearth", "HOST": host, "OPTIONS": options}


@pytest.mark.parametrize(
    ("db", "warned"),
    [
        (_postgres("db.corp.example"), True),
        (_postgres("db.corp.example", sslmode="prefer"), True),
        (_postgres("db.corp.example", sslmode="disable"), True),
        (_postgres("db.corp.example", sslmode="require"), False),
        (_postgres("db.corp.example", sslmode="verify-full", sslrootcert="/etc/ca.pem"), False),
        (_postgres("127.0.0.1"), False),
        (_postgres(""), False),  # a unix socket
        (_postgres("/var/run/postgresql"), False),
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": "/x.sqlite3"}, False),
    ],
)
def test_postgresql_beyond_loopback_needs_tls(monkeypatch, db, warned):
    from types import SimpleNamespace

    monkeypatch.setattr(checks, "settings", SimpleNamespace(DATABASES={"default": db}))
    assert ids(checks.check_database_tls(None)) == (["hearth.W032"] if warned else [])


def test_smtp_beyond_loopback_needs_tls(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    assert checks.check_smtp_tls(None) == []
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_USE_TLS, settings.EMAIL_HOST_PASSWORD = (
        "smtp.corp.example",
        False,
        "pw",
    )
    [issue] = checks.check_smtp_tls(None)
    assert issue.id == "hearth.W033" and "SMTP password" in issue.msg
    settings.EMAIL_USE_TLS = True
    assert checks.check_smtp_tls(None) == []
    settings.EMAIL_USE_TLS, settings.EMAIL_HOST = False, "localhost"
    assert checks.check_smtp_tls(None) == []


def test_check_deploy_reports_them_from_the_environment(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("placeholder"), key.write_text("placeholder")
    prod = {"HEARTH_PRODUCTION": "1", "HEARTH_TLS_CERT": str(cert), "HEARTH_TLS_KEY": str(key)}
    risky = {
        "HEARTH_BEHIND_PROXY": "1",
        "HEARTH_WEB_BIND": "0.0.0.0",
        "HEARTH_ENGINE_URLS": "http://gpu2.corp.example:8765",
        "HEARTH_SMTP_HOST": "smtp.corp.example",
        "HEARTH_DATABASE": "postgres://hearth:pw@db.corp.example:5432/hearth",
    }
    proc = manage(
        tmp_path / "h", "check", "--deploy", "--fail-level", "WARNING", check=False, **prod, **risky
    )
    assert proc.returncode != 0
    for check_id in ("hearth.W030", "hearth.W031", "hearth.W032", "hearth.W033"):
        assert check_id in proc.stderr, proc.stderr
    fixed = {
        **risky,
        "HEARTH_TRUSTED_PROXIES": "10.0.0.5",
        "HEARTH_SMTP_TLS": "1",
        "HEARTH_DATABASE": risky["HEARTH_DATABASE"] + "?sslmode=verify-full",
    }
    del fixed["HEARTH_ENGINE_URLS"]
    ok = manage(tmp_path / "h", "check", "--deploy", "--fail-level", "WARNING", check=False, **prod, **fixed)
    assert ok.returncode == 0, ok.stderr
