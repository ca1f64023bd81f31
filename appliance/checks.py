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
                "HEARTH_PRODUCTION=1 without TLS: set HEARTH_TLS_CERT and HEARTH_TLS_KEY (gunicorn serves HTTPS) "
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
