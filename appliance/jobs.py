"""Enqueue django-q2 jobs after the surrounding transaction commits; tasks take primary keys."""

from __future__ import annotations

import logging

from django.db import transaction

logger = logging.getLogger(__name__)


def job_enqueue(func: str, *args, group: str = "") -> None:
    """Schedule `func` (a dotted path) once the current transaction commits."""
    from django_q.tasks import async_task

    def _send() -> None:
        kwargs = {"group": group or func.rsplit(".", 1)[-1], "task_name": f"{func.rsplit('.', 1)[-1]}:{args}"[:100]}
        async_task(func, *args, **kwargs)
        logger.info("enqueued %s%s", func, args)

    transaction.on_commit(_send)
