"""The only module that knows the order of the stages: train → export → evaluate → gate → serve."""

from __future__ import annotations

import logging
import traceback

from django.db import transaction

from appliance import paths
from appliance.errors import HearthError
from appliance.jobs import job_enqueue
from trainer.models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)


def after_training(run: TrainingRun) -> None:
    from appliance.notifications import notify

    if run.status in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
        notify(title=f"Training run {run.pk} {run.status}", body=run.status_reason,
               level="error" if run.status == TrainingRun.Status.FAILED else "info")
        return
    if run.status != TrainingRun.Status.SUCCEEDED or ModelVersion.objects.filter(run=run).exists():
        return
    version = ModelVersion.objects.create(base=run.base, run=run)
    version.path = str(paths.model_version_dir(version.pk))
    version.save(update_fields=["path"])
    job_enqueue("trainer.tasks.model_version_build", version.pk)


def model_version_build(version: ModelVersion) -> ModelVersion:
    """Export the run's adapter to GGUF, evaluate it against the base/served model, gate it."""
    from django.conf import settings

    from appliance.notifications import notify
    from trainer.evaluation.services import evaluation_run, promotion_decide
    from trainer.export.services import export_cleanup, model_version_export
    from trainer.versions import model_version_promote

    log = version.log_line
    try:
        model_version_export(version=version, log=log)
        report = evaluation_run(dataset=version.run.dataset, version=version, log=log)
        _serving_mode_choose(version, report)
        promote, reason = promotion_decide(report, margin=settings.HEARTH_PROMOTION_MARGIN)
        report.decision = reason
        report.save(update_fields=["decision"])
        log(reason)
        with transaction.atomic():  # readers see "building", then the decision: never a passing "candidate"
            version.transition(ModelVersion.Status.CANDIDATE)
            if promote:
                model_version_promote(version=version)
        export_cleanup(version)
        notify(title=f"Model version {version.pk} {'promoted' if promote else 'kept as a candidate'}",
               body=reason, level="success" if promote else "info")
    except HearthError as exc:
        log(f"failed: {exc}")
        version.transition(ModelVersion.Status.FAILED, reason=str(exc))
        notify(title=f"Model version {version.pk} failed", body=str(exc), level="error")
    except Exception as exc:  # a bug must still leave the row failed with a reason, not "building"
        log("unexpected error:\n" + traceback.format_exc())
        version.transition(ModelVersion.Status.FAILED, reason=f"Unexpected error: {exc}")
        raise
    return version


def retrain_if_changed() -> str:
    """Scheduled (hourly, when HEARTH_AUTO_RETRAIN is on): if the mirrors behind the last training
    run have new commits, build a fresh dataset and retrain with the same settings. The retrain rate
    limit still applies."""
    from django.conf import settings

    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_sync
    from trainer.training.config import LoraSettings
    from trainer.training.services import training_run_start

    if not settings.HEARTH_AUTO_RETRAIN:
        return "automatic retraining is off (HEARTH_AUTO_RETRAIN)"
    last = TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED).select_related("dataset", "base").last()
    if last is None:
        return "no earlier training run to repeat"
    repos = list(last.dataset.repositories.all())
    try:
        for repo in repos:
            repository_sync(repo=repo)
        if all(last.dataset.commits.get(r.name) == r.head_sha for r in repos):
            return "no new commits since the last training run"
        dataset = dataset_build(repositories=repos)
        run = training_run_start(dataset=dataset, base=last.base, settings=LoraSettings.from_dict(last.settings))
    except HearthError as exc:
        logger.info("automatic retrain skipped: %s", exc)
        return f"skipped: {exc}"
    return f"new commits: started training run {run.pk}"


def _serving_mode_choose(version: ModelVersion, report) -> None:
    """Serve fill-in-the-middle only if it scored at least as well as prefix-only completion on the
    held-out lines: a short fine-tune can add FIM tokens to a base without teaching it to infill."""
    lines = report.metrics["models"]["candidate"]["line_completion"]
    if "fim" not in lines or "prefix" not in lines:
        return
    fim, prefix = lines["fim"]["exact_match"], lines["prefix"]["exact_match"]
    if fim < prefix:
        version.manifest = {**version.manifest, "trained_fim_format": version.fim_format, "serving_mode": "prefix"}
        version.fim_format = ""
        version.save(update_fields=["fim_format", "manifest"])
        version.log_line(f"FIM mode scored below prefix-only ({fim:.3f} vs {prefix:.3f} exact match): "
                         "this version serves prefix-only completions")
