"""django-q2 entry points of the pipeline beyond training (which lives in training/tasks.py)."""

from __future__ import annotations

from trainer.models import ModelVersion


def model_version_build(version_pk: int) -> str:
    from trainer import pipeline

    version = ModelVersion.objects.select_related("run__base", "run__dataset", "base").get(pk=version_pk)
    return pipeline.model_version_build(version).status


def custom_model_prepare(run_pk: int) -> str:
    from trainer import pipeline
    from trainer.models import TrainingRun

    return pipeline.custom_model_prepare(TrainingRun.objects.select_related("dataset").get(pk=run_pk))


def retrain_if_changed() -> str:
    from trainer import pipeline

    return pipeline.retrain_if_changed()


def stuck_rows_watchdog() -> str:
    from trainer.watchdog import stuck_rows_watchdog as watchdog

    released = watchdog()
    return f"released {', '.join(released)}" if released else "nothing stuck"
