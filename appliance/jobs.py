"""Enqueue django-q2 jobs after the surrounding transaction commits; tasks take primary keys."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


def job_queue(*, gpu: bool = False) -> str:
    """The django-q2 queue (its "cluster" name) a job goes to: the GPU queue for GPU jobs when one is
    configured, else the default queue that every ordinary worker consumes."""
    if gpu and settings.HEARTH_GPU_QUEUE:
        return settings.HEARTH_GPU_QUEUE
    return settings.Q_CLUSTER["name"]


def job_enqueue(func: str, *args, group: str = "", gpu: bool = False) -> None:
    """Schedule `func` (a dotted path) once the current transaction commits. The queue is named
    explicitly: a job enqueued from inside a GPU worker must not land on that worker's own queue."""
    from django_q.tasks import async_task

    queue = job_queue(gpu=gpu)

    def _send() -> None:
        name = func.rsplit(".", 1)[-1]
        async_task(func, *args, group=group or name, task_name=f"{name}:{args}"[:100], cluster=queue)
        logger.info("enqueued %s%s on queue %s", func, args, queue)

    transaction.on_commit(_send)
