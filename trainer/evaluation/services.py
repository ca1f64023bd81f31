"""Evaluation rows: score the base, the served model and a candidate on the same held-out tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from appliance.errors import EvaluationError
from trainer.basemodels.fim import fim_format_get
from trainer.datasets.builder import dataset_files_read
from trainer.evaluation.harness import Candidate, models_compare
from trainer.evaluation.tasks import line_tasks_build, span_tasks_build
from trainer.models import BaseModel, Dataset, EvaluationReport, ModelVersion

logger = logging.getLogger(__name__)

PRIMARY_METRIC = "exact_match"


def served_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED).order_by("-promoted_at").first()


def _base_candidate(base: BaseModel) -> Candidate:
    if not base.gguf_path:
        raise EvaluationError(f"Base model {base.slug} has no GGUF to score.")
    return Candidate("base", Path(base.gguf_path), fim_format_get(base.fim_format) if base.can_infill else None)


def _version_candidate(label: str, version: ModelVersion) -> Candidate:
    return Candidate(label, Path(version.gguf_path), fim_format_get(version.fim_format))


def evaluation_run(
    *, dataset: Dataset, version: ModelVersion | None = None, base: BaseModel | None = None,
    max_tasks: int = 300, max_span_tasks: int = 40, splits: tuple[str, ...] = ("heldout",),
    log: Callable[[str], None] = logger.info,
) -> EvaluationReport:
    """Score base, currently served model (if any, and not the candidate) and the candidate.
    `splits=("train", "heldout")` scores every file of a dataset no model trained on (extra
    evaluation repositories)."""
    base = base or (version.base if version else None)
    if base is None:
        raise EvaluationError("Nothing to evaluate: give a model version or a base model.")
    models = [_base_candidate(base)]
    served = served_version()
    if served is not None and (version is None or served.pk != version.pk) and served.base_id == base.pk:
        models.append(_version_candidate("served", served))
    if version is not None:
        models.append(_version_candidate("candidate", version))
    heldout = [f for split in splits for f in dataset_files_read(Path(dataset.path), split)]
    tasks = line_tasks_build(heldout, max_tasks=max_tasks)
    spans = span_tasks_build(heldout, max_tasks=max_span_tasks) if max_span_tasks else []
    log(f"{len(tasks)} held-out line tasks and {len(spans)} multi-line spans from {len(heldout)} files")
    metrics = models_compare(models, tasks, [f["text"] for f in heldout], log=log, span_tasks=spans)
    return EvaluationReport.objects.create(dataset=dataset, version=version, mode=metrics["mode"], metrics=metrics)


def promotion_decide(report: EvaluationReport, *, margin: float) -> tuple[bool, str]:
    """Promote only if the candidate beats the served model (or the base) by `margin` on exact match."""
    models = report.metrics["models"]
    mode = report.metrics["mode"]
    reference = "served" if "served" in models else "base"
    cand = models["candidate"]["line_completion"][mode][PRIMARY_METRIC]
    ref = models[reference]["line_completion"][mode][PRIMARY_METRIC]
    if cand > ref + margin:
        return True, (f"promoted: exact match {cand:.3f} beats the {reference} model's {ref:.3f} "
                      f"by more than {margin:.3f} ({mode} mode)")
    return False, (f"kept as a candidate: exact match {cand:.3f} does not beat the {reference} model's "
                   f"{ref:.3f} by more than {margin:.3f} ({mode} mode)")
