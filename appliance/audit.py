"""The audit log: every admin action appended with who, when, what and from where."""

from __future__ import annotations

import functools
import ipaddress
import logging

from django.conf import settings

from appliance.models import AuditEntry

logger = logging.getLogger(__name__)


def audit_record(
    *, action: str, actor: str = "", target: str = "", detail: str = "", ip: str | None = None
) -> AuditEntry:
    """Append one entry. `actor` is a user name (empty: the system), `ip` the client's address."""
    entry = AuditEntry.objects.create(
        action=action, actor=actor[:150], target=target[:200], detail=detail, ip=ip or None
    )
    logger.info("audit: %s %s %s", actor or "system", action, target)
    return entry


def request_client_ip(request) -> str | None:
    """The client address of a Django request, the one the audit log, the admin login throttle and the
    API's invalid-token limit all count: REMOTE_ADDR, the peer that connected. Behind a proxy
    (HEARTH_BEHIND_PROXY) whose address is one of HEARTH_TRUSTED_PROXIES, the right-most
    X-Forwarded-For entry that is not a trusted proxy: the address the nearest untrusted hop connected
    from, as a trusted proxy recorded it. Entries left of it came from the client and are never believed,
    nor is the header of a peer that is not a trusted proxy."""
    meta = getattr(request, "META", None) or {}
    remote = _address(meta.get("REMOTE_ADDR") or "")
    if remote is None or not settings.HEARTH_BEHIND_PROXY or not _trusted_proxy(remote):
        return remote
    client = remote
    for entry in reversed(meta.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _address(entry)
        if address is None:  # not an address: nothing left of it can be believed
            break
        client = address
        if not _trusted_proxy(address):
            break
    return client


def _address(value: str) -> str | None:
    """`value` as an IP address (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`), or None."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value.split("%", 1)[0]))
    except ValueError:
        return None


def _trusted_proxy(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(tuple(settings.HEARTH_TRUSTED_PROXIES)))


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry.strip("[]"), strict=False) for entry in entries)


def request_audit(request, *, action: str, target: str = "", detail: str = "") -> AuditEntry:
    """`audit_record` for the user and address of `request`."""
    user = getattr(request, "user", None)
    actor = user.get_username() if user is not None and user.is_authenticated else ""
    return audit_record(
        action=action, actor=actor, target=target, detail=detail, ip=request_client_ip(request)
    )


def login_failed_record(sender, credentials: dict, request=None, **kwargs) -> None:
    """`user_login_failed` receiver: the name tried (never the password) and the address."""
    audit_record(
        action="login.failed",
        actor="",
        target=str(credentials.get("username", ""))[:200],
        detail="sign-in refused",
        ip=request_client_ip(request) if request is not None else None,
    )
