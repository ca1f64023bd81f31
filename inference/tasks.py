"""django-q2 entry points for serving (thin wrappers around services)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def telemetry_purge_task() -> dict:
    from inference.telemetry import telemetry_purge

    deleted = telemetry_purge()
    logger.info("telemetry purge: %s", deleted)
    return deleted


def canary_check_task() -> str:
    from inference.canary import canary_check

    return canary_check()
