"""The one way a stage runs (see DESIGN.md, "The pipeline"): every stage task calls `stage_run`.

`stage_run(row, work, ...)`:

1. claims the row: the guarded transition into its working state (`claim_to`) when it is not in
   one yet, then the worker's name and first heartbeat, written only if no other worker holds it;
2. keeps the row's heartbeat fresh while `work(stage)` runs, so the stuck-rows watchdog can tell a
   dead worker (it fails the row, or puts a training run back in the queue to resume);
3. writes the stage's manifest atomically (`stage.manifest(...)`: inputs by sha256, settings,
   outputs; the runner adds the library and llama.cpp versions and the timings);
4. finishes: the transition to `done_to` (or the stage's own `finish`), or, when the work raised,
   the transition to `failed_to` with the reason, and the traceback in the row's log for an error
   that is not one of Hearth's own (a bug must fail the row at once, never leave it "working").
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from django.utils import timezone

from appliance.errors import HearthError, InvalidTransition
from appliance.status import WorkedRow, heartbeat_keep, worker_name

logger = logging.getLogger(__name__)

T = TypeVar("T")


class StageCancelled(Exception):
    """Raised by a stage's work when an admin cancelled it: the row goes to its cancelled state."""


class StageTaken(InvalidTransition):
    """Another worker holds the row, or it is no longer waiting for one: nothing was done."""


class Stage:
    """What the work of a stage sees: its row, its log, its manifest and its timings."""

    def __init__(self, row: WorkedRow, name: str):
        self.row, self.name = row, name
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self._manifest: tuple[Path, dict] | None = None

    def log(self, line: str) -> None:
        self.row.log_line(line)

    def timed(self, phase: str, seconds: float) -> None:
        self.timings[phase] = round(seconds, 3)

    def manifest(self, folder: Path, **fields: Any) -> None:
        """Ask for `folder/manifest.json` to be written when the work succeeds (fields such as
        inputs, settings, outputs; later calls add to earlier ones)."""
        previous = self._manifest[1] if self._manifest else {}
        self._manifest = (Path(folder), {**previous, **fields})

    def manifest_flush(self) -> dict | None:
        from appliance.manifests import manifest_write

        if self._manifest is None:
            return None
        folder, fields = self._manifest
        self._manifest = None  # written once; the runner's own flush then has nothing left to do
        timings = {**fields.pop("timings", {}), **self.timings}
        timings["seconds"] = round(time.monotonic() - self.started, 3)
        return manifest_write(folder, stage=self.name, timings=timings, **fields)


def stage_claim(row: WorkedRow, *, claim_to: str | None = None) -> None:
    """Move `row` into its working state (when `claim_to` is given) and mark it as this worker's.
    Raises StageTaken when the transition is refused or another worker already holds the row."""
    if claim_to is not None:
        try:
            row.transition(claim_to)
        except InvalidTransition as exc:
            raise StageTaken(str(exc)) from exc
    if row.status not in row.WORKING:
        raise StageTaken(f"{type(row).__name__} {row.pk} is {row.status}, not waiting for a worker.")
    now, name = timezone.now(), worker_name()
    claimed = (
        type(row)
        .objects.filter(pk=row.pk, status=row.status, worker="")
        .update(worker=name, heartbeat_at=now, updated_at=now)
    )
    if not claimed:
        row.refresh_from_db(fields=["status", "worker"])
        raise StageTaken(
            f"{type(row).__name__} {row.pk} is already held by {row.worker or 'another worker'}."
        )
    row.worker, row.heartbeat_at = name, now


def stage_refuse(row: WorkedRow, reason: str, *, to: str = "failed") -> None:
    """Fail a row before any work started (its inputs are not there): the reason in its log and status."""
    row.log_line(f"failed: {reason}")
    row.transition(to, reason=reason)


def stage_run(
    row: WorkedRow,
    work: Callable[[Stage], T],
    *,
    stage: str,
    claim_to: str | None = None,
    claimed: bool = False,
    done_to: str | None = None,
    finish: Callable[[Stage, T], None] | None = None,
    failed_to: str = "failed",
    cancelled_to: str = "cancelled",
    on_error: Callable[[BaseException], None] | None = None,
) -> T:
    """Claim `row`, run `work(stage)` under its heartbeat, write its manifest, finish or fail it.

    A HearthError is the stage's own refusal: its message is the reason, and it is raised again for
    the caller (a command prints it, a task returns it). Any other exception is a bug: the row
    fails at once with its type and message as the reason and the traceback in its log, and it is
    raised again so the worker records it too. `on_error` runs before the row moves (a stage
    keeping what it learnt, a dataset's report of what it refused). `claimed`: the caller already
    claimed the row with `stage_claim` (a training run counts its attempts there)."""
    if not claimed:
        stage_claim(row, claim_to=claim_to)
    ctx = Stage(row, stage)
    try:
        with heartbeat_keep(row):
            result = work(ctx)
            ctx.manifest_flush()
            if finish is not None:
                finish(ctx, result)
            elif done_to is not None:
                row.transition(done_to)
    except StageCancelled as exc:
        _cancel(row, str(exc) or "Cancelled by an admin.", cancelled_to)
        raise
    except HearthError as exc:
        _fail(row, str(exc), failed_to, exc, on_error)
        raise
    except Exception as exc:
        ctx.log("unexpected error:\n" + traceback.format_exc().rstrip())
        _fail(row, f"Unexpected error ({type(exc).__name__}): {exc}", failed_to, exc, on_error)
        raise
    ctx.log(f"{stage} done in {time.monotonic() - ctx.started:.1f} s")
    return result


def _fail(row: WorkedRow, reason: str, to: str, exc: BaseException, on_error) -> None:
    if on_error is not None:
        try:
            on_error(exc)
        except Exception:  # what it records is a courtesy; the row must still fail
            logger.exception("recording the failure of %s %s", type(row).__name__, row.pk)
    row.log_line(f"failed: {reason}")
    try:
        row.transition(to, reason=reason)
    except InvalidTransition:  # the watchdog or an admin moved it meanwhile: their word stands
        logger.warning(
            "%s %s failed (%s) but had already moved to %s", type(row).__name__, row.pk, reason, row.status
        )


def _cancel(row: WorkedRow, reason: str, to: str) -> None:
    row.log_line(f"cancelled: {reason}")
    try:
        row.transition(to, reason=reason)
    except InvalidTransition:
        logger.warning(
            "%s %s was cancelled but had already moved to %s", type(row).__name__, row.pk, row.status
        )
