"""Rows left in a working state by a worker that died, and the admin's way to try them again.

A repository left `syncing` would be skipped by the scheduled sync forever, a version left
`building` never rebuilt, a dataset or an evaluation left `building` / `running` never finished.
`stuck_rows_watchdog` (a django-q2 schedule, every minute) fails each one whose heartbeat is
older than HEARTH_WORK_STUCK_S, with the reason in its log and a notification; `row_retry` queues
the work again. A training run is the exception: it goes back to the queue and resumes from its
last checkpoint in the next worker, until HEARTH_TRAINING_MAX_ATTEMPTS attempts have died.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from appliance.errors import PipelineError
from appliance.jobs import job_enqueue
from appliance.notifications import notify
from appliance.stages import stage_refuse
from appliance.status import WorkedRow, stuck_rows_release
from trainer.models import BaseModel, Dataset, EvaluationReport, ModelVersion, Repository, TrainingRun

WATCHED: tuple[type[WorkedRow], ...] = (
    Repository,
    Dataset,
    TrainingRun,
    ModelVersion,
    EvaluationReport,
    BaseModel,
)


def row_label(row: WorkedRow) -> str:
    name = getattr(row, "name", "") or getattr(row, "slug", "")
    return f"{row._meta.verbose_name} {name or row.pk}"


def stuck_rows_watchdog() -> list[str]:
    """Fail every watched row whose worker went silent; returns what it released."""
    released = []
    for model in WATCHED:
        for row in stuck_rows_release(model, stuck_s=settings.HEARTH_WORK_STUCK_S):
            label = row_label(row)
            if isinstance(row, TrainingRun):
                released.append(_run_requeue(row))
                continue
            notify(
                title=f"{label[0].upper()}{label[1:]} was stuck and is now failed",
                body=row.status_reason,
                level="error",
            )
            released.append(label)
            if isinstance(row, Dataset):
                _waiting_runs_fail(row)
    return released


def _run_requeue(run: TrainingRun) -> str:
    """A run whose worker died: queue it again to resume from its checkpoint, or fail it for good
    after HEARTH_TRAINING_MAX_ATTEMPTS attempts (a run that kills its worker every time)."""
    from trainer.pipeline import after_training

    attempts = settings.HEARTH_TRAINING_MAX_ATTEMPTS
    if run.attempts >= attempts:
        reason = (
            f"The training worker died {run.attempts} times ({run.status_reason}); giving up. "
            "Check the machine's memory and the worker log."
        )
        stage_refuse(run, reason)
        after_training(run)
        return f"training run {run.pk} (failed after {run.attempts} attempts)"
    with transaction.atomic():
        run.log_line("watchdog: requeued to resume from the last checkpoint")
        job_enqueue("trainer.tasks.training_run_execute", run.pk, gpu=True)
    return f"training run {run.pk} (requeued)"


def _waiting_runs_fail(dataset: Dataset) -> None:
    """Runs queued behind a dataset whose build died cannot start: fail them with the reason."""
    from trainer.models import TrainingRun
    from trainer.pipeline import after_training

    for run in TrainingRun.objects.filter(dataset=dataset, status=TrainingRun.Status.QUEUED):
        stage_refuse(run, f"Dataset {dataset.pk} failed: {dataset.status_reason}")
        after_training(run)


def row_retry(row: WorkedRow) -> str:
    """Queue the work of a failed repository, dataset or model version again. Says what it did;
    raises PipelineError when the row cannot be retried (and why)."""
    if row.status != row.STUCK_TO:
        raise PipelineError(
            f"{row_label(row).capitalize()} is {row.status}; only a failed one can be retried."
        )
    if isinstance(row, Repository):
        job_enqueue("trainer.mirrors.tasks.repository_sync_task", row.pk)
        return f"sync of {row.name} queued"
    if isinstance(row, Dataset):
        with transaction.atomic():
            row.transition(Dataset.Status.PENDING, reason="Retried.")
            row.log_line("retry queued")
            job_enqueue("trainer.datasets.tasks.dataset_execute_task", row.pk)
        return f"build of dataset {row.pk} queued"
    if isinstance(row, ModelVersion):
        run = row.run
        if run.status != run.Status.SUCCEEDED:
            raise PipelineError(f"Version {row.pk}'s training run {run.pk} did not succeed; start a new one.")
        with transaction.atomic():
            row.transition(ModelVersion.Status.BUILDING, reason="Retried.")
            row.log_line("retry queued: export, evaluation and the promotion gate run again")
            job_enqueue("trainer.tasks.model_version_build", row.pk)
        return f"build of version {row.pk} queued"
    if isinstance(row, EvaluationReport):
        raise PipelineError("Retry the model version this evaluation belongs to; it evaluates again.")
    raise PipelineError(f"Import {row_label(row)} again with `manage.py basemodel_import`.")
