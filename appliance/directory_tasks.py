"""django-q2 entry point of the periodic directory check (scheduled every 15 minutes by the
appliance's migration 0005; a no-op while no directory is configured)."""

from __future__ import annotations

import logging
from dataclasses import asdict

from django.conf import settings

logger = logging.getLogger(__name__)


def directory_check_task() -> dict:
    """Deactivate the directory users the directory no longer lists as staff (their API tokens stop
    working), reactivate those it lists again; see appliance/directory.py."""
    if not settings.HEARTH_LDAP_URI:
        return {"skipped": "no directory configured (HEARTH_LDAP_URI)"}
    from appliance.directory import DirectoryError, directory_accounts_check

    try:
        result = directory_accounts_check()
    except DirectoryError as exc:
        logger.error("directory check stopped: %s; the users not checked are left as they were", exc)
        return {"error": str(exc)}
    logger.info(
        "directory check: %d users, deactivated %s, reactivated %s",
        result.checked,
        result.deactivated or "none",
        result.reactivated or "none",
    )
    return asdict(result)
