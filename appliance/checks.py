"""System checks for the appliance's own security settings (run by every management command)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from appliance.instance import secret_key_weakness


@register(Tags.security)
def check_secret_key(app_configs, **kwargs):
    """hearth.E001: sessions and (unless HEARTH_CREDENTIAL_KEY is set) stored git credentials are
    protected by SECRET_KEY; a weak one is refused outright, not only under --deploy."""
    why = secret_key_weakness(settings.SECRET_KEY)
    if not why:
        return []
    return [
        Error(
            f"SECRET_KEY is weak: {why}. Hearth will not store credentials under it.",
            hint="Unset HEARTH_SECRET_KEY to use the generated HEARTH_HOME/secret_key, or set a random value of "
            "50+ characters.",
            id="hearth.E001",
        )
    ]


@register(Tags.security, deploy=True)
def check_tls(app_configs, **kwargs):
    """hearth.W001/E002: production cookies are Secure, so the web tier must be reached over TLS."""
    issues = []
    if not settings.HEARTH_PRODUCTION:
        issues.append(
            Warning(
                "HEARTH_PRODUCTION is not set: cookies are not Secure and there is no HSTS.",
                hint="Set HEARTH_PRODUCTION=1 on a deployed appliance.",
                id="hearth.W002",
            )
        )
        return issues
    cert, key = settings.HEARTH_TLS_CERT, settings.HEARTH_TLS_KEY
    if not (cert and key) and not settings.HEARTH_BEHIND_PROXY:
        issues.append(
            Warning(
                "HEARTH_PRODUCTION=1 without TLS: set HEARTH_TLS_CERT and HEARTH_TLS_KEY (Hearth's web front serves HTTPS) "
                "or HEARTH_BEHIND_PROXY=1 behind a TLS reverse proxy.",
                hint="Secure cookies are never sent over plain HTTP, so admin logins would fail.",
                id="hearth.W001",
            )
        )
    for name, value in (("HEARTH_TLS_CERT", cert), ("HEARTH_TLS_KEY", key)):
        if value and not Path(value).is_file():
            issues.append(Error(f"{name} names {value}, which is not a readable file.", id="hearth.E002"))
    return issues


def _loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@register(Tags.security, deploy=True)
def check_directory_tls(app_configs, **kwargs):
    """hearth.E020: in production, admins' directory passwords never cross the network in clear, so an
    ldap:// directory beyond loopback needs STARTTLS (on unless HEARTH_LDAP_START_TLS=0)."""
    from urllib.parse import urlsplit

    uris = (getattr(settings, "HEARTH_LDAP_URI", "") or "").replace(",", " ").split()
    if not settings.HEARTH_PRODUCTION or getattr(settings, "AUTH_LDAP_START_TLS", False):
        return []
    plain = [
        uri
        for uri in uris
        if uri.lower().startswith("ldap://") and not _loopback(urlsplit(uri).hostname or "")
    ]
    if not plain:
        return []
    return [
        Error(
            f"HEARTH_LDAP_URI names {', '.join(plain)} without STARTTLS: directory passwords would cross the "
            "network in clear.",
            hint="Remove HEARTH_LDAP_START_TLS=0 (STARTTLS is on by default, HEARTH_LDAP_CA_FILE names the "
            "directory's CA), or use an ldaps:// URI.",
            id="hearth.E020",
        )
    ]


# --- who is believed, and what crosses the network in clear (deploy checks) ---------------------------


def _host_loopback(host: str) -> bool:
    """A bind address or host that stays on this machine: loopback, or a unix socket (no host, as libpq
    reads it, or a directory)."""
    host = (host or "").strip().strip("[]")
    return not host or host.startswith("/") or _loopback(host)


@register(Tags.security, deploy=True)
def check_proxy_trust(app_configs, **kwargs):
    """hearth.E030/W030: behind a proxy, X-Forwarded-For is believed only from HEARTH_TRUSTED_PROXIES.
    Trusting every address lets any client pick the address the login throttle and the audit log see;
    a web port open beyond loopback with only loopback trusted means the proxy is elsewhere (and its
    clients all count as the proxy) or can be bypassed."""
    import ipaddress

    if not settings.HEARTH_BEHIND_PROXY:
        return []
    networks = [ipaddress.ip_network(p.strip("[]"), strict=False) for p in settings.HEARTH_TRUSTED_PROXIES]
    if any(net.prefixlen == 0 for net in networks):
        return [
            Error(
                "HEARTH_TRUSTED_PROXIES trusts every address: any client can choose the address that the "
                "login throttle, the API's invalid-token limit and the audit log see.",
                hint="Name only the reverse proxy's own addresses.",
                id="hearth.E030",
            )
        ]
    if _host_loopback(settings.HEARTH_WEB_BIND) or any(not net.is_loopback for net in networks):
        return []
    return [
        Warning(
            f"HEARTH_BEHIND_PROXY=1 with HEARTH_WEB_BIND={settings.HEARTH_WEB_BIND} and no trusted proxy "
            "beyond loopback: clients can reach Hearth's web port around the proxy, and a proxy on another host is "
            "not believed (every client it forwards counts as the proxy).",
            hint="Bind 127.0.0.1 behind a proxy on this box, or set HEARTH_TRUSTED_PROXIES to the proxy's "
            "addresses and let only the proxy reach the web port.",
            id="hearth.W030",
        )
    ]


@register(Tags.security, deploy=True)
def check_engine_transport(app_configs, **kwargs):
    """hearth.W031: the web tier reaches its engines over plain HTTP (whatever a URL's scheme); beyond
    loopback, prompts and completions (the users' code) and the engine secret cross the network in clear."""
    from urllib.parse import urlsplit

    urls = list(getattr(settings, "HEARTH_ENGINE_URLS", []) or [])
    hosts = [(url, urlsplit(url).hostname or "") for url in urls] or [
        (f"{settings.HEARTH_ENGINE_HOST}:{settings.HEARTH_ENGINE_PORT}", settings.HEARTH_ENGINE_HOST)
    ]
    plain = [url for url, host in hosts if not _host_loopback(host)]
    if not plain:
        return []
    return [
        Warning(
            f"The engine is reached over plain HTTP beyond loopback ({', '.join(plain)}): prompts, "
            "completions and the engine secret cross the network unencrypted.",
            hint="Keep the engines on loopback, or carry the web-to-engine hop over an encrypted link "
            "(a private network segment with IPsec or WireGuard, or a TLS tunnel).",
            id="hearth.W031",
        )
    ]


@register(Tags.security, deploy=True)
def check_database_tls(app_configs, **kwargs):
    """hearth.W032: a PostgreSQL server beyond loopback without sslmode=require/verify-ca/verify-full
    (libpq's default, prefer, falls back to clear text and checks no certificate)."""
    issues = []
    for alias, db in settings.DATABASES.items():
        postgres = db.get("ENGINE", "").endswith(("postgresql", "postgis"))
        if not postgres or _host_loopback(db.get("HOST", "")):
            continue
        mode = (db.get("OPTIONS") or {}).get("sslmode", "")
        if mode in ("require", "verify-ca", "verify-full"):
            continue
        issues.append(
            Warning(
                f"The {alias} database ({db.get('HOST')}) is reached without TLS being required "
                f"(sslmode={mode or 'unset'}): the users' code, credentials and token digests may cross the "
                "network in clear.",
                hint="Add ?sslmode=verify-full&sslrootcert=/path/to/ca.pem (or at least sslmode=require) to "
                "HEARTH_DATABASE.",
                id="hearth.W032",
            )
        )
    return issues


@register(Tags.security, deploy=True)
def check_smtp_tls(app_configs, **kwargs):
    """hearth.W033: notification mail (and the SMTP password) to a server beyond loopback without TLS."""
    if not getattr(settings, "EMAIL_BACKEND", "").endswith("smtp.EmailBackend"):
        return []
    if _host_loopback(getattr(settings, "EMAIL_HOST", "")):
        return []
    if getattr(settings, "EMAIL_USE_TLS", False) or getattr(settings, "EMAIL_USE_SSL", False):
        return []
    return [
        Warning(
            f"Mail goes to {settings.EMAIL_HOST} without TLS: notifications"
            + (" and the SMTP password" if getattr(settings, "EMAIL_HOST_PASSWORD", "") else "")
            + " cross the network in clear.",
            hint="Set HEARTH_SMTP_TLS=1 (STARTTLS).",
            id="hearth.W033",
        )
    ]
