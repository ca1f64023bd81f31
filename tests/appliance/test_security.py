"""Production settings, the generated secret key, private instance files, throttled logins, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

ROOT = Path(__file__).resolve().parents[2]


def hearth_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh Hearth process on `home`: no HEARTH_ variable leaks in from ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env.update({"HEARTH_HOME": str(home), "DJANGO_SETTINGS_MODULE": "appliance.settings", **extra})
    return env


def manage(home: Path, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=hearth_env(home, **extra),
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def settings_value(home: Path, expr: str, **extra: str) -> str:
    code = f"import django; django.setup(); from django.conf import settings; print({expr})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=hearth_env(home, **extra),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- secret key and private instance files ---------------------------------------------------------


def test_secret_key_is_generated_private_and_stable(tmp_path):
    home = tmp_path / "instance"
    key = settings_value(home, "settings.SECRET_KEY")
    path = home / "secret_key"
    assert path.read_text().strip() == key
    assert mode(path) == 0o600
    assert mode(home) == 0o700
    assert len(key) >= 50 and key != "hearth-insecure-single-box-key"
    assert settings_value(home, "settings.SECRET_KEY") == key  # the next start reads it back
    other = settings_value(tmp_path / "other", "settings.SECRET_KEY")
    assert other != key  # one per instance, never a constant


def test_explicit_secret_key_wins_and_writes_no_file(tmp_path):
    home = tmp_path / "instance"
    key = "x" * 10 + "abcdefghij" * 5
    assert settings_value(home, "settings.SECRET_KEY", HEARTH_SECRET_KEY=key) == key
    assert not (home / "secret_key").exists()


def test_database_and_instance_files_are_private(tmp_path):
    home = tmp_path / "instance"
    manage(home, "migrate", "--noinput", "-v0")
    assert mode(home) == 0o700
    assert mode(home / "hearth.sqlite3") & 0o077 == 0
    created = settings_value(home, "__import__('appliance.paths', fromlist=['x']).logs_dir()")
    assert mode(Path(created)) & 0o077 == 0


def test_existing_world_readable_home_is_narrowed(tmp_path):
    home = tmp_path / "instance"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    settings_value(home, "settings.SECRET_KEY")
    assert mode(home) == 0o700


def test_secret_key_weakness():
    from appliance.instance import secret_key_weakness

    assert secret_key_weakness("hearth-insecure-single-box-key")
    assert secret_key_weakness("django-insecure-" + "a1b2c3" * 10)
    assert secret_key_weakness("short")
    assert secret_key_weakness("a" * 60)
    assert secret_key_weakness(django_settings.SECRET_KEY) == ""


def test_weak_secret_key_fails_the_system_check(tmp_path):
    proc = manage(tmp_path / "h", "check", check=False, HEARTH_SECRET_KEY="hearth-insecure-single-box-key")
    assert proc.returncode != 0
    assert "hearth.E001" in proc.stderr


def test_no_credential_is_stored_under_a_weak_key(settings):
    from appliance.errors import MirrorError
    from trainer.mirrors.credentials import credential_decrypt, credential_encrypt

    token = credential_encrypt("s3cret")
    assert credential_decrypt(token) == "s3cret"
    settings.SECRET_KEY = "hearth-insecure-single-box-key"
    settings.HEARTH_CREDENTIAL_KEY = ""
    with pytest.raises(MirrorError, match="weak"):
        credential_encrypt("s3cret")


# --- production settings ---------------------------------------------------------------------------


def test_check_deploy_passes_under_production_settings(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("placeholder"), key.write_text("placeholder")
    prod = {"HEARTH_PRODUCTION": "1", "HEARTH_TLS_CERT": str(cert), "HEARTH_TLS_KEY": str(key)}
    ok = manage(tmp_path / "h", "check", "--deploy", "--fail-level", "WARNING", check=False, **prod)
    assert ok.returncode == 0, ok.stderr
    proxied = manage(
        tmp_path / "h",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        check=False,
        HEARTH_PRODUCTION="1",
        HEARTH_BEHIND_PROXY="1",
    )
    assert proxied.returncode == 0, proxied.stderr


def test_check_deploy_fails_without_production_or_tls(tmp_path):
    dev = manage(tmp_path / "h", "check", "--deploy", "--fail-level", "WARNING", check=False)
    assert dev.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in dev.stderr
    plain = manage(
        tmp_path / "h", "check", "--deploy", "--fail-level", "WARNING", check=False, HEARTH_PRODUCTION="1"
    )
    assert plain.returncode != 0 and "hearth.W001" in plain.stderr


def test_production_settings_from_the_environment(tmp_path):
    home = tmp_path / "h"
    env = {
        "HEARTH_PRODUCTION": "1",
        "HEARTH_BEHIND_PROXY": "1",
        "HEARTH_WEB_BIND": "0.0.0.0",
        "HEARTH_CSRF_TRUSTED_ORIGINS": "https://hearth.example,https://hearth.lan:8443",
    }
    got = settings_value(
        home,
        "[settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, "
        "settings.SESSION_COOKIE_HTTPONLY, settings.SECURE_HSTS_SECONDS > 0, "
        "settings.SECURE_SSL_REDIRECT, settings.SECURE_PROXY_SSL_HEADER, "
        "settings.CSRF_TRUSTED_ORIGINS, settings.HEARTH_WEB_BIND, "
        "len(settings.AUTH_PASSWORD_VALIDATORS)]",
        **env,
    )
    assert got == (
        "[True, True, True, True, True, ('HTTP_X_FORWARDED_PROTO', 'https'), "
        "['https://hearth.example', 'https://hearth.lan:8443'], '0.0.0.0', 4]"
    )
    dev = settings_value(
        home, "[getattr(settings, 'SECURE_PROXY_SSL_HEADER', None), settings.HEARTH_WEB_BIND]"
    )
    assert dev == "[None, '127.0.0.1']"


def test_password_validators_refuse_a_weak_password():
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        validate_password("password")
    validate_password("correct horse battery staple 42")


def test_gunicorn_binds_the_setting_and_serves_tls(settings):
    from appliance.processes import gunicorn_command, web_url

    args = gunicorn_command(8000)
    assert args[args.index("--bind") + 1] == "127.0.0.1:8000" and "--certfile" not in args
    settings.HEARTH_WEB_BIND = "0.0.0.0"
    settings.HEARTH_TLS_CERT, settings.HEARTH_TLS_KEY = "/etc/hearth/cert.pem", "/etc/hearth/key.pem"
    args = gunicorn_command(8443)
    assert args[args.index("--bind") + 1] == "0.0.0.0:8443"
    assert args[args.index("--certfile") + 1] == "/etc/hearth/cert.pem"
    assert args[args.index("--keyfile") + 1] == "/etc/hearth/key.pem"
    assert web_url(8443) == "https://127.0.0.1:8443"
    settings.HEARTH_WEB_BIND = "::1"
    assert gunicorn_command(1)[gunicorn_command(1).index("--bind") + 1] == "[::1]:1"


# --- admin logins ----------------------------------------------------------------------------------


@pytest.fixture
def admin_user(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", "", "correct horse battery staple 42")


def _login(client, password, addr):
    return client.post(
        "/admin/login/?next=/admin/", {"username": "root", "password": password}, REMOTE_ADDR=addr
    )


def test_failed_logins_lock_out_the_client_address(admin_user, client, settings):
    settings.HEARTH_LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        assert _login(client, "wrong", "10.1.2.3").status_code == 200
    refused = _login(client, "correct horse battery staple 42", "10.1.2.3")
    assert refused.status_code == 200 and b"Too many failed logins" in refused.content
    # Another address is not affected, and a success there clears only its own count.
    assert _login(client, "correct horse battery staple 42", "10.9.9.9").status_code == 302


def test_lockout_expires(admin_user, client, settings):
    from datetime import timedelta

    from appliance.models import LoginFailure

    settings.HEARTH_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        _login(client, "wrong", "10.1.2.4")
    assert b"Too many" in _login(client, "correct horse battery staple 42", "10.1.2.4").content
    LoginFailure.objects.update(
        at=LoginFailure.objects.first().at - timedelta(seconds=settings.HEARTH_LOGIN_LOCKOUT_S + 1)
    )
    assert _login(client, "correct horse battery staple 42", "10.1.2.4").status_code == 302


def test_login_through_a_tls_proxy_passes_csrf(admin_user, settings):
    """Behind a TLS proxy: Secure cookies, the proxy's X-Forwarded-Proto, a trusted origin."""
    from django.test import Client

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.HEARTH_BEHIND_PROXY = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.ALLOWED_HOSTS = ["hearth.example"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://hearth.example"]
    client = Client(enforce_csrf_checks=True, HTTP_HOST="hearth.example", HTTP_X_FORWARDED_PROTO="https")
    page = client.get("/admin/login/")
    token = page.context["csrf_token"]
    ok = client.post(
        "/admin/login/?next=/admin/",
        {
            "username": "root",
            "password": "correct horse battery staple 42",
            "csrfmiddlewaretoken": str(token),
        },
        HTTP_ORIGIN="https://hearth.example",
        HTTP_X_FORWARDED_FOR="192.0.2.7",
    )
    assert ok.status_code == 302, ok.content[:500]
    assert client.cookies["sessionid"]["secure"]


def test_client_address_behind_a_proxy_is_the_last_forwarded_hop(rf, settings):
    from appliance.login_throttle import client_address

    request = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.1.1.1, 192.0.2.7")
    assert client_address(request) == "127.0.0.1"
    settings.HEARTH_BEHIND_PROXY = True
    assert client_address(request) == "192.0.2.7"


# --- serve and SIGTERM -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_serve_stops_its_children_on_sigterm(tmp_path):
    psutil = pytest.importorskip("psutil")
    home = tmp_path / "instance"
    web, engine = _free_port(), _free_port()
    extra = {"HEARTH_ENGINE_PORT": str(engine)}
    manage(home, "migrate", "--noinput", "-v0")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-worker", "--port", str(web)],
        cwd=ROOT,
        env=hearth_env(home, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    children = []
    try:
        deadline = time.monotonic() + 90
        while not (_listening(web) and _listening(engine)):
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "serve did not open its ports"
            time.sleep(0.3)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        _gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, f"still running after SIGTERM: {[p.pid for p in alive]}"
        assert not _listening(web) and not _listening(engine)
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in children:  # the ones this test started, if the fix regressed
            if child.is_running():
                child.kill()


# --- the client address behind a proxy -------------------------------------------------------------


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(rf, settings):
    """gunicorn bound beyond loopback behind a proxy: a client that reaches it directly cannot choose its
    address with X-Forwarded-For (the login throttle and the audit log would follow it)."""
    from appliance.audit import request_client_ip
    from appliance.login_throttle import client_address

    settings.HEARTH_BEHIND_PROXY = True
    settings.HEARTH_WEB_BIND = "0.0.0.0"
    direct = rf.get("/", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert client_address(direct) == request_client_ip(direct) == "203.0.113.5"
    proxied = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.5")
    assert client_address(proxied) == request_client_ip(proxied) == "203.0.113.5"


def test_the_client_is_the_right_most_untrusted_forwarded_address(rf, settings):
    from appliance.audit import request_client_ip

    settings.HEARTH_BEHIND_PROXY = True
    settings.HEARTH_TRUSTED_PROXIES = ["10.0.0.0/24", "::1"]

    def client(remote, forwarded):
        return request_client_ip(rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded))

    # Two proxies of ours (10.0.0.3 saw the client, 10.0.0.2 connected to gunicorn); the client's own
    # claim (1.1.1.1) is left of what our proxies recorded.
    assert client("10.0.0.2", "1.1.1.1, 198.51.100.1, 10.0.0.3") == "198.51.100.1"
    assert client("10.0.0.2", "198.51.100.1:5123") == "198.51.100.1"
    assert client("::1", "[2001:db8::7]:443") == "2001:db8::7"
    assert client("10.0.0.2", "not-an-address, 10.0.0.3") == "10.0.0.3"
    assert client("10.0.0.2", "") == "10.0.0.2"
    assert client("127.0.0.1", "198.51.100.1") == "127.0.0.1"  # loopback is no longer listed
    assert client("198.51.100.9", "10.0.0.3") == "198.51.100.9"
    settings.HEARTH_BEHIND_PROXY = False
    assert client("10.0.0.2", "198.51.100.1") == "10.0.0.2"


def test_rotating_forwarded_for_does_not_escape_the_login_throttle(admin_user, client, settings):
    settings.HEARTH_BEHIND_PROXY = True
    settings.HEARTH_WEB_BIND = "0.0.0.0"
    settings.HEARTH_LOGIN_MAX_FAILURES = 3
    for i in range(3):
        client.post(
            "/admin/login/?next=/admin/",
            {"username": "root", "password": "wrong"},
            REMOTE_ADDR="203.0.113.5",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{i}",
        )
    refused = client.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "correct horse battery staple 42"},
        REMOTE_ADDR="203.0.113.5",
        HTTP_X_FORWARDED_FOR="10.0.0.99",
    )
    assert b"Too many failed logins" in refused.content


def test_audit_entries_behind_the_proxy_carry_the_client_address(admin_user, client, settings):
    from appliance.models import AuditEntry

    settings.HEARTH_BEHIND_PROXY = True
    client.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "wrong"},
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR="192.0.2.7",
    )
    entry = AuditEntry.objects.get(action="login.failed")
    assert entry.ip == "192.0.2.7"
    from appliance.models import LoginFailure

    assert LoginFailure.objects.get().address == "192.0.2.7"  # the throttle counts the same address


def test_trusted_proxies_setting_is_checked(tmp_path):
    assert settings_value(tmp_path / "h", "settings.HEARTH_TRUSTED_PROXIES") == "['127.0.0.1', '::1']"
    assert (
        settings_value(
            tmp_path / "h", "settings.HEARTH_TRUSTED_PROXIES", HEARTH_TRUSTED_PROXIES="10.0.0.0/24"
        )
        == "['10.0.0.0/24']"
    )
    bad = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=hearth_env(tmp_path / "h", HEARTH_TRUSTED_PROXIES="proxy.corp"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0 and "HEARTH_TRUSTED_PROXIES" in bad.stderr
