"""Training runs: create, execute (in a worker), record progress, cancel."""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from pathlib import Path

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from appliance import paths
from appliance.errors import HearthError, TrainingError
from appliance.jobs import job_enqueue
from appliance.notifications import notify
from trainer.datasets.builder import dataset_files_read
from trainer.models import BaseModel, Dataset, ProgressPoint, TrainingRun
from trainer.training.config import LoraSettings

logger = logging.getLogger(__name__)


def training_run_start(
    *, dataset: Dataset, base: BaseModel, settings: LoraSettings, force: bool = False
) -> TrainingRun:
    """Queue a fine-tune. Retraining the same base is rate-limited (HEARTH_RETRAIN_MIN_INTERVAL_H)
    unless `force` is given."""
    if not force:
        rate_limit_check(base)
    if dataset.status != Dataset.Status.READY:
        raise TrainingError(f"Dataset {dataset.pk} is {dataset.status}, not ready.")
    if base.status != BaseModel.Status.READY:
        raise TrainingError(f"Base model {base.slug} is {base.status}, not ready.")
    with transaction.atomic():
        run = TrainingRun.objects.create(dataset=dataset, base=base, settings=settings.as_dict())
        run.path = str(paths.run_dir(run.pk))
        run.save(update_fields=["path"])
        job_enqueue("trainer.training.tasks.training_run_execute", run.pk, gpu=True)
    return run


class RetrainLimited(TrainingError):
    """Retraining a base now is refused by the rate limit; `run` is the run that holds it."""

    def __init__(self, message: str, *, run: TrainingRun | None = None):
        super().__init__(message)
        self.run = run


def training_rate_limit(*, base: BaseModel) -> str:
    """Why retraining `base` now is refused by the rate limit, or "" when it is allowed."""
    try:
        rate_limit_check(base)
    except TrainingError as exc:
        return str(exc)
    return ""


def rate_limit_check(base: BaseModel) -> None:
    """Raise RetrainLimited when `base` was trained within HEARTH_RETRAIN_MIN_INTERVAL_H."""
    hours = django_settings.HEARTH_RETRAIN_MIN_INTERVAL_H
    last = (
        TrainingRun.objects.filter(base=base)
        .exclude(status__in=[TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED])
        .order_by("-created_at")
        .first()
    )
    if hours and last and timezone.now() - last.created_at < timedelta(hours=hours):
        wait = timedelta(hours=hours) - (timezone.now() - last.created_at)
        raise RetrainLimited(
            f"Retraining {base.slug} is limited to once every {hours:g} h; run {last.pk} started "
            f"{last.created_at:%Y-%m-%d %H:%M} UTC. Next allowed in {wait.total_seconds() / 3600:.1f} h.",
            run=last,
        )


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    if run.status == TrainingRun.Status.QUEUED:
        run.transition(TrainingRun.Status.CANCELLED, reason="Cancelled before it started.")
    elif run.status == TrainingRun.Status.RUNNING:
        TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
        run.log_line("cancel requested")
    else:
        raise TrainingError(f"Run {run.pk} is {run.status}; only queued or running runs can be cancelled.")
    return run


class _Heartbeat(threading.Thread):
    """Keeps `heartbeat_at` fresh while the run trains, so a watchdog can tell a dead worker."""

    def __init__(self, run_pk: int):
        super().__init__(daemon=True)
        self.run_pk = run_pk
        self.stopped = threading.Event()

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stopped.wait(django_settings.HEARTH_TRAINING_HEARTBEAT_S):
                TrainingRun.objects.filter(pk=self.run_pk).update(heartbeat_at=timezone.now())
        finally:
            connection.close()


def _claim(run: TrainingRun) -> bool:
    """Move a queued run to running in one conditional UPDATE: two workers can never both win."""
    claimed = TrainingRun.objects.filter(
        pk=run.pk, status=TrainingRun.Status.QUEUED, cancel_requested=False
    ).update(
        status=TrainingRun.Status.RUNNING,
        attempts=F("attempts") + 1,
        heartbeat_at=timezone.now(),
        worker_pid=os.getpid(),
        updated_at=timezone.now(),
    )
    run.refresh_from_db()
    return bool(claimed)


def training_run_execute(*, run: TrainingRun) -> TrainingRun:
    """Train in this process (a worker task). Resumes from the run's checkpoint if one exists;
    does nothing if another worker holds the run."""
    from trainer.training.distributed import train_distributed
    from trainer.training.loop import Progress, TrainingCancelled, train
    from trainer.training.modeling import method_choose

    if not _claim(run):
        logger.info("run %s is %s; not starting it here", run.pk, run.status)
        return run
    max_attempts = django_settings.HEARTH_TRAINING_MAX_ATTEMPTS
    if run.attempts > max_attempts:
        run.transition(
            TrainingRun.Status.FAILED,
            reason=f"Gave up after {max_attempts} attempts: the worker kept dying (out of memory?).",
        )
        return run
    settings = LoraSettings.from_dict(run.settings)
    method = method_choose(settings.quantization)
    run.method, run.device = method.name, method.device
    run.save(update_fields=["method", "device"])
    processes = django_settings.HEARTH_TRAINING_GPUS
    run.log_line(
        f"attempt {run.attempts} (pid {os.getpid()}): {method.name} on {method.device}"
        f"{f' in {processes} processes' if processes > 1 else ''} — {method.reason}"
    )
    dataset_dir = Path(run.dataset.path)

    def on_progress(p: Progress) -> None:
        ProgressPoint.objects.create(
            run=run,
            step=p.step,
            total_steps=p.total_steps,
            loss=p.loss,
            eval_loss=p.eval_loss,
            tokens_per_s=p.tokens_per_s,
            eta_s=p.eta_s,
            peak_memory_mb=p.peak_memory_mb,
        )
        TrainingRun.objects.filter(pk=run.pk).update(
            step=p.step, total_steps=p.total_steps, heartbeat_at=timezone.now()
        )

    def should_stop() -> bool:
        return TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()

    heartbeat = _Heartbeat(run.pk)
    heartbeat.start()
    try:
        if processes > 1:
            summary = train_distributed(
                processes=processes,
                hf_path=run.base.hf_path,
                dataset_dir=dataset_dir,
                settings=settings,
                device=method.device,
                out_dir=Path(run.path),
                on_progress=on_progress,
                should_stop=should_stop,
                log=run.log_line,
            )
        else:
            summary = train(
                hf_path=run.base.hf_path,
                train_files=dataset_files_read(dataset_dir, "train"),
                heldout_files=dataset_files_read(dataset_dir, "heldout"),
                settings=settings,
                method=method,
                out_dir=Path(run.path),
                on_progress=on_progress,
                should_stop=should_stop,
                log=run.log_line,
            )
    except TrainingCancelled:
        run.transition(TrainingRun.Status.CANCELLED, reason="Cancelled by an admin.")
        return run
    except HearthError as exc:
        run.log_line(f"failed: {exc}")
        run.transition(TrainingRun.Status.FAILED, reason=str(exc))
        return run
    finally:
        heartbeat.stopped.set()
    run.adapter_path = str(Path(run.path) / "adapter")
    run.summary = summary
    run.save(update_fields=["adapter_path", "summary"])
    _manifest_write(run, dataset_dir, settings, method, summary)
    run.transition(TrainingRun.Status.SUCCEEDED)
    run.log_line(
        f"done: {summary['steps']} steps at {summary['tokens_per_s']} tok/s, "
        f"best held-out loss {summary['best_eval_loss']}"
    )
    return run


def _manifest_write(
    run: TrainingRun, dataset_dir: Path, settings: LoraSettings, method, summary: dict
) -> None:
    """The training stage's manifest: the dataset's manifest and the base's files as inputs, the
    settings and method, the adapter's files by sha256, the libraries and the timings."""
    from appliance.manifests import manifest_sha256, manifest_write
    from appliance.paths import sha256_file

    adapter = Path(run.adapter_path)
    manifest_write(
        Path(run.path),
        stage="training",
        run=run.pk,
        inputs={
            "dataset": run.dataset_id,
            "dataset_manifest": manifest_sha256(dataset_dir),
            "base": run.base.slug,
            "base_files": run.base.manifest.get("files", {}),
        },
        settings=settings.as_dict(),
        method={"name": method.name, "device": method.device},
        adapter={p.name: sha256_file(p) for p in sorted(adapter.iterdir()) if p.is_file()}
        if adapter.is_dir()
        else {},
        timings={
            "seconds": summary.get("seconds"),
            "steps": summary.get("steps"),
            "tokens_per_s": summary.get("tokens_per_s"),
        },
    )


def training_watchdog() -> list[int]:
    """Requeue runs whose worker died (stale heartbeat), or fail them after too many attempts.
    Returns the primary keys it requeued. Runs on a django-q2 schedule."""
    stale_before = timezone.now() - timedelta(seconds=django_settings.HEARTH_TRAINING_STALE_S)
    requeued = []
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=stale_before):
        silent = (timezone.now() - run.heartbeat_at).total_seconds()
        if run.attempts >= django_settings.HEARTH_TRAINING_MAX_ATTEMPTS:
            run.transition(
                TrainingRun.Status.FAILED,
                reason=(
                    f"The training worker died {run.attempts} times (no heartbeat for {silent:.0f} s); giving up. "
                    "Check the machine's memory and the worker log."
                ),
            )
            notify(title=f"Training run {run.pk} failed", body=run.status_reason, level="error")
            continue
        run.log_line(
            f"no heartbeat for {silent:.0f} s from pid {run.worker_pid}: worker presumed dead; "
            "requeued to resume from the last checkpoint"
        )
        with transaction.atomic():
            run.transition(TrainingRun.Status.QUEUED, reason="Requeued after the worker died.")
            job_enqueue("trainer.training.tasks.training_run_execute", run.pk, gpu=True)
        requeued.append(run.pk)
    return requeued
