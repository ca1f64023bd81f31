"""django-q2 entry points: take primary keys, call one service."""

from __future__ import annotations

import os

from trainer.models import TrainingRun


def training_run_execute(run_pk: int) -> str:
    from trainer import pipeline
    from trainer.training.services import training_run_execute as execute

    run = execute(run=TrainingRun.objects.select_related("base", "dataset").get(pk=run_pk))
    if run.worker_pid == os.getpid():  # only the worker that claimed the run moves the pipeline on
        pipeline.after_training(run)
    return run.status


def training_watchdog() -> str:
    from trainer.training.services import training_watchdog as watchdog

    return f"requeued {watchdog()}"
