"""Training runs: create, execute (in a worker), record progress, cancel."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from appliance import paths
from appliance.errors import HearthError, TrainingError
from appliance.jobs import job_enqueue
from appliance.stages import Stage, StageCancelled, stage_claim, stage_run
from trainer.datasets.accepted import accepted_used
from trainer.models import BaseModel, Dataset, ProgressPoint, TrainingRun
from trainer.tools.dataset_files import dataset_accepted_read, dataset_files_read
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
        job_enqueue("trainer.tasks.training_run_execute", run.pk, gpu=True)
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


def training_run_execute(*, run: TrainingRun) -> TrainingRun:
    """Train in this process (a worker task), through the stage runner: claim the queued run (one
    more attempt), heartbeat, train (resuming from the run's checkpoint if one exists), write the
    manifest, finish. Raises StageTaken when another worker holds the run or it is not queued."""
    if run.cancel_requested and run.status == TrainingRun.Status.QUEUED:
        run.transition(TrainingRun.Status.CANCELLED, reason="Cancelled before it started.")
        return run
    stage_claim(run, claim_to=TrainingRun.Status.RUNNING)
    TrainingRun.objects.filter(pk=run.pk).update(attempts=F("attempts") + 1)
    run.attempts += 1
    try:
        stage_run(
            run,
            lambda stage: _train(run, stage),
            stage="training",
            claimed=True,
            finish=lambda stage, summary: _finish(run, summary),
        )
    except (HearthError, StageCancelled):
        pass  # recorded on the run by the stage runner
    return run


def _train(run: TrainingRun, stage: Stage) -> dict:
    from trainer.training.distributed import train_distributed
    from trainer.training.loop import TrainingCancelled, train

    settings = LoraSettings.from_dict(run.settings)
    method = training_method_for(run, settings)
    run.method, run.device = method.name, method.device
    run.save(update_fields=["method", "device"])
    processes = django_settings.HEARTH_TRAINING_GPUS
    stage.log(
        f"attempt {run.attempts} ({run.worker}): {method.name} on {method.device}"
        f"{f' in {processes} processes' if processes > 1 else ''} — {method.reason}"
    )
    dataset_dir = Path(run.dataset.path)
    common = {
        "settings": settings,
        "out_dir": Path(run.path),
        "on_progress": lambda p: _progress_record(run, p),
        "should_stop": lambda: TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists(),
        "log": stage.log,
    }
    try:
        if processes > 1:
            summary = train_distributed(
                processes=processes,
                hf_path=run.base.hf_path,
                dataset_dir=dataset_dir,
                device=method.device,
                method=method,
                **common,
            )
        else:
            summary = train(
                hf_path=run.base.hf_path,
                train_files=dataset_files_read(dataset_dir, "train"),
                heldout_files=dataset_files_read(dataset_dir, "heldout"),
                accepted_files=dataset_accepted_read(dataset_dir),
                method=method,
                **common,
            )
    except TrainingCancelled as exc:
        raise StageCancelled("Cancelled by an admin.") from exc
    if summary.get("accepted_completions"):  # how many developers they came from: the dataset knows
        summary["accepted_developers"] = (run.dataset.report.get("accepted") or {}).get("developers", 0)
        stage.log(accepted_used(summary))
    run.adapter_path = str(Path(run.path) / method.output)
    run.summary = summary
    run.save(update_fields=["adapter_path", "summary"])
    _manifest_record(run, stage, dataset_dir, settings, method, summary)
    return summary


def training_method_for(run: TrainingRun, settings: LoraSettings):
    """The method a run trains with: the one its first attempt chose (a resumed run must load the
    checkpoint it wrote), else chosen now from the settings, the base's size and the free memory."""
    from trainer.training.methods import activation_bytes, method_choose, method_named

    if run.method and run.device:
        return method_named(run.method, run.device)
    return method_choose(
        settings.method,
        quantization=settings.quantization,
        hf_path=run.base.hf_path,
        activations=activation_bytes(run.base.hf_path, settings.batch_size, settings.seq_len),
    )


def _progress_record(run: TrainingRun, p) -> None:
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


def _finish(run: TrainingRun, summary: dict) -> None:
    run.transition(TrainingRun.Status.SUCCEEDED)
    run.log_line(
        f"done ({summary.get('method', run.method)}): {summary['steps']} steps at {summary['tokens_per_s']} tok/s, "
        f"best held-out loss {summary['best_eval_loss']}"
    )


def _manifest_record(
    run: TrainingRun, stage: Stage, dataset_dir: Path, settings: LoraSettings, method, summary: dict
) -> None:
    """The training stage's manifest: the dataset's manifest and the base's files as inputs, the
    settings and method, the adapter's files by sha256 and the run's own timings."""
    from appliance.manifests import manifest_sha256
    from appliance.paths import sha256_file

    adapter = Path(run.adapter_path)
    stage.manifest(
        Path(run.path),
        run=run.pk,
        inputs={
            "dataset": run.dataset_id,
            "dataset_manifest": manifest_sha256(dataset_dir),
            "base": run.base.slug,
            "base_files": run.base.manifest.get("files", {}),
        },
        settings=settings.as_dict(),
        method={
            "name": method.name,
            "device": method.device,
            "reason": method.reason,
            "output": method.output,
        },
        adapter={p.name: sha256_file(p) for p in sorted(adapter.iterdir()) if p.is_file()}
        if adapter.is_dir()
        else {},
        timings={
            "training_s": summary.get("seconds"),
            "steps": summary.get("steps"),
            "tokens_per_s": summary.get("tokens_per_s"),
        },
    )
