"""django-q2 entry points: take primary keys, call one service."""

from __future__ import annotations

from trainer.models import TrainingRun


def training_run_execute(run_pk: int) -> str:
    from trainer import pipeline
    from trainer.training.services import training_run_execute as execute

    run = execute(run=TrainingRun.objects.select_related("base", "dataset").get(pk=run_pk))
    pipeline.after_training(run)
    return run.status
