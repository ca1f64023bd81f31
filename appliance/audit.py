"""The audit log: every admin action appended with who, when, what and from where."""

from __future__ import annotations

import logging

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
    """The client address of a Django request: REMOTE_ADDR (a reverse proxy in front sets it through
    its own trusted configuration; X-Forwarded-For from the client is never believed)."""
    return (getattr(request, "META", {}) or {}).get("REMOTE_ADDR") or None


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
