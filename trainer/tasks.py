"""django-q2 entry points of the pipeline: each takes primary keys, runs one stage or moves the
pipeline on. They sit above every stage (tests/test_layers.py), so a stage never imports the pipeline."""

from __future__ import annotations

from trainer.models import ModelVersion


def model_version_build(version_pk: int) -> str:
    from trainer import pipeline

    version = ModelVersion.objects.select_related("run__base", "run__dataset", "base").get(pk=version_pk)
    return pipeline.model_version_build(version).status


def training_run_execute(run_pk: int) -> str:
    """Train a queued run; only the worker that claimed it moves the pipeline on (its model version)."""
    from appliance.stages import StageTaken
    from trainer import pipeline
    from trainer.models import TrainingRun
    from trainer.training.services import training_run_execute as execute

    run = TrainingRun.objects.select_related("base", "dataset").get(pk=run_pk)
    try:
        execute(run=run)
    except StageTaken as exc:
        return f"not started here: {exc}"
    except Exception:  # a bug: the runner failed the run already; the admin still hears of it
        run.refresh_from_db()
        pipeline.after_training(run)
        raise
    pipeline.after_training(run)
    return run.status


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
