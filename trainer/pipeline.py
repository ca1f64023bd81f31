"""The only module that knows the order of the stages: train → export → evaluate → gate → serve."""

from __future__ import annotations

import logging
import traceback

from appliance import paths
from appliance.errors import HearthError
from appliance.jobs import job_enqueue
from trainer.models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)


def after_training(run: TrainingRun) -> None:
    if run.status != TrainingRun.Status.SUCCEEDED:
        return
    version = ModelVersion.objects.create(base=run.base, run=run)
    version.path = str(paths.model_version_dir(version.pk))
    version.save(update_fields=["path"])
    job_enqueue("trainer.tasks.model_version_build", version.pk)


def model_version_build(version: ModelVersion) -> ModelVersion:
    """Export the run's adapter to GGUF, evaluate it against the base/served model, gate it."""
    from django.conf import settings

    from trainer.evaluation.services import evaluation_run, promotion_decide
    from trainer.export.services import export_cleanup, model_version_export
    from trainer.versions import model_version_promote

    log = version.log_line
    try:
        model_version_export(version=version, log=log)
        report = evaluation_run(dataset=version.run.dataset, version=version, log=log)
        version.transition(ModelVersion.Status.CANDIDATE)
        promote, reason = promotion_decide(report, margin=settings.HEARTH_PROMOTION_MARGIN)
        report.decision = reason
        report.save(update_fields=["decision"])
        log(reason)
        if promote:
            model_version_promote(version=version)
        export_cleanup(version)
    except HearthError as exc:
        log(f"failed: {exc}")
        version.transition(ModelVersion.Status.FAILED, reason=str(exc))
    except Exception as exc:  # a bug must still leave the row failed with a reason, not "building"
        log("unexpected error:\n" + traceback.format_exc())
        version.transition(ModelVersion.Status.FAILED, reason=f"Unexpected error: {exc}")
        raise
    return version
