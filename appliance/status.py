"""Rows with a guarded status: every long stage is one of these (see DESIGN.md, "The pipeline")."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import timedelta

from django.db import models
from django.db.models import Value
from django.db.models.functions import Concat
from django.utils import timezone

from appliance.errors import InvalidTransition

logger = logging.getLogger(__name__)


class StatusRow(models.Model):
    """A row whose `status` moves only along `TRANSITIONS`, with its own log lines.

    The guard is a conditional UPDATE (`WHERE status = <current>`), so two processes racing to
    move the same row cannot both win: the loser gets `InvalidTransition`.
    """

    TRANSITIONS: dict[str, set[str]] = {}

    status_reason = models.TextField(blank=True, default="", help_text="Why the row is in its status.")
    log = models.TextField(blank=True, default="", help_text="The stage's own log lines.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def can_transition(self, to: str) -> bool:
        return to in self.TRANSITIONS.get(self.status, set())

    def transition(self, to: str, *, reason: str = "") -> None:
        if not self.can_transition(to):
            raise InvalidTransition(
                f"{type(self).__name__} {self.pk} cannot go from '{self.status}' to '{to}'."
            )
        moved = (
            type(self)
            .objects.filter(pk=self.pk, status=self.status)
            .update(status=to, status_reason=reason, updated_at=timezone.now())
        )
        if not moved:
            self.refresh_from_db(fields=["status"])
            raise InvalidTransition(
                f"{type(self).__name__} {self.pk} changed underneath us (now '{self.status}'); not moving to '{to}'."
            )
        self.status = to
        self.status_reason = reason

    def log_line(self, message: str) -> None:
        """Append one timestamped line to the row's log without rewriting other fields."""
        line = f"{timezone.now():%Y-%m-%d %H:%M:%S} {message}\n"
        type(self).objects.filter(pk=self.pk).update(log=Concat("log", Value(line)))
        self.log += line


class WorkedRow(StatusRow):
    """A StatusRow whose `WORKING` states belong to one live worker process at a time.

    The worker claims the row with `appliance.stages.stage_claim`, which stamps `worker` (host and
    pid) and `heartbeat_at`, and keeps the heartbeat fresh with `heartbeat_keep(row)`; moving into a
    working state clears both. A row whose worker died keeps its working state
    forever unless `stuck_rows_release` moves it to `STUCK_TO`, from which the admin retries it.
    """

    WORKING: frozenset[str] = frozenset()
    STUCK_TO = "failed"
    STUCK_ADVICE = "Retry it from the admin."

    heartbeat_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Last sign of life from the worker on this row."
    )
    worker = models.CharField(
        max_length=200, blank=True, default="", editable=False, help_text="Host and pid of the worker."
    )

    class Meta:
        abstract = True

    @property
    def worker_pid(self) -> int | None:
        """The pid of the worker holding the row (from `worker`, "host pid N"), if any."""
        _, _, pid = self.worker.rpartition(" pid ")
        return int(pid) if pid.isdigit() else None

    def transition(self, to: str, *, reason: str = "") -> None:
        super().transition(to, reason=reason)
        if to in self.WORKING:  # unclaimed until a worker's `stage_claim` (a retry may wait queued)
            self.heartbeat_at, self.worker = None, ""
            type(self).objects.filter(pk=self.pk).update(heartbeat_at=None, worker="")


def worker_name() -> str:
    import os
    import socket

    return f"{socket.gethostname()} pid {os.getpid()}"


@contextmanager
def heartbeat_keep(row: WorkedRow, interval_s: float | None = None):
    """Refresh `row.heartbeat_at` every `interval_s` (HEARTH_WORK_HEARTBEAT_S) while the block runs.
    The row is already this worker's: `appliance.stages.stage_claim` wrote its name and first beat."""
    import threading

    from django.conf import settings
    from django.db import DatabaseError, connection

    interval = interval_s if interval_s is not None else settings.HEARTH_WORK_HEARTBEAT_S
    model, pk, stop = type(row), row.pk, threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    model.objects.filter(pk=pk).update(heartbeat_at=timezone.now())
                except DatabaseError as exc:  # a busy database: the next beat tries again
                    logger.warning("heartbeat of %s %s not written: %s", model.__name__, pk, exc)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{model.__name__}-{pk}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def stuck_rows_release(model: type[WorkedRow], *, stuck_s: float) -> list[WorkedRow]:
    """Move every row of `model` silent in a working state for `stuck_s` to `model.STUCK_TO`, with
    the reason in its status and its log. A row its worker finishes meanwhile is left alone (the
    move is the same conditional UPDATE as any transition)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=stuck_s)
    released = []
    # A row no worker has claimed yet (heartbeat_at empty) waits in the queue, which redelivers it.
    for row in model.objects.filter(heartbeat_at__lt=cutoff, status__in=model.WORKING):
        last = row.heartbeat_at
        reason = (
            f"Stuck in '{row.status}': no sign of life for {(now - last).total_seconds():.0f} s from "
            f"{row.worker or 'its worker'}, which presumably died. {model.STUCK_ADVICE}"
        )
        try:
            row.transition(model.STUCK_TO, reason=reason)
        except InvalidTransition:
            continue
        row.log_line(f"watchdog: {reason}")
        released.append(row)
    return released
