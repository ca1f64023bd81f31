"""Training runs: create, execute (in a worker), record progress, cancel."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from appliance import paths
from appliance.errors import HearthError, TrainingError
from appliance.jobs import job_enqueue
from trainer.datasets.builder import dataset_files_read
from trainer.models import BaseModel, Dataset, ProgressPoint, TrainingRun
from trainer.training.config import LoraSettings

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
HEARTBEAT_S = 10.0


def training_run_start(*, dataset: Dataset, base: BaseModel, settings: LoraSettings) -> TrainingRun:
    if dataset.status != Dataset.Status.READY:
        raise TrainingError(f"Dataset {dataset.pk} is {dataset.status}, not ready.")
    if base.status != BaseModel.Status.READY:
        raise TrainingError(f"Base model {base.slug} is {base.status}, not ready.")
    with transaction.atomic():
        run = TrainingRun.objects.create(dataset=dataset, base=base, settings=settings.as_dict())
        run.path = str(paths.run_dir(run.pk))
        run.save(update_fields=["path"])
        job_enqueue("trainer.training.tasks.training_run_execute", run.pk)
    return run


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
            while not self.stopped.wait(HEARTBEAT_S):
                TrainingRun.objects.filter(pk=self.run_pk).update(heartbeat_at=timezone.now())
        finally:
            connection.close()


def training_run_execute(*, run: TrainingRun) -> TrainingRun:
    """Train in this process. Called by the worker task; resumes from a checkpoint if one exists."""
    from trainer.training.loop import Progress, TrainingCancelled, train
    from trainer.training.modeling import method_choose

    attempts = run.attempts + 1
    TrainingRun.objects.filter(pk=run.pk).update(attempts=attempts, heartbeat_at=timezone.now())
    run.attempts = attempts
    if attempts > MAX_ATTEMPTS:
        run.transition(TrainingRun.Status.FAILED,
                       reason=f"Gave up after {MAX_ATTEMPTS} attempts: the worker kept dying (out of memory?).")
        return run
    if run.status == TrainingRun.Status.QUEUED:
        run.transition(TrainingRun.Status.RUNNING)
    settings = LoraSettings.from_dict(run.settings)
    method = method_choose(settings.quantization)
    run.method, run.device = method.name, method.device
    run.save(update_fields=["method", "device"])
    run.log_line(f"attempt {attempts}: {method.name} on {method.device} — {method.reason}")
    dataset_dir = Path(run.dataset.path)

    def on_progress(p: Progress) -> None:
        ProgressPoint.objects.create(
            run=run, step=p.step, total_steps=p.total_steps, loss=p.loss, eval_loss=p.eval_loss,
            tokens_per_s=p.tokens_per_s, eta_s=p.eta_s, peak_memory_mb=p.peak_memory_mb,
        )
        TrainingRun.objects.filter(pk=run.pk).update(step=p.step, total_steps=p.total_steps, heartbeat_at=timezone.now())

    def should_stop() -> bool:
        return TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()

    heartbeat = _Heartbeat(run.pk)
    heartbeat.start()
    try:
        summary = train(
            hf_path=run.base.hf_path,
            train_files=dataset_files_read(dataset_dir, "train"),
            heldout_files=dataset_files_read(dataset_dir, "heldout"),
            settings=settings, method=method, out_dir=Path(run.path), on_progress=on_progress,
            should_stop=should_stop, log=run.log_line,
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
    run.transition(TrainingRun.Status.SUCCEEDED)
    run.log_line(f"done: {summary['steps']} steps at {summary['tokens_per_s']} tok/s, "
                 f"best held-out loss {summary['best_eval_loss']}")
    return run


def promotion_margin() -> float:
    return float(getattr(django_settings, "HEARTH_PROMOTION_MARGIN", 0.0))
