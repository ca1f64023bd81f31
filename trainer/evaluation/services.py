"""Evaluation rows: score the base, the served model and a candidate on the same held-out tasks."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from appliance import paths
from appliance.errors import EvaluationError
from appliance.llm.fim import fim_format_get
from appliance.manifests import manifest_sha256
from appliance.paths import sha256_file
from appliance.stages import Stage, stage_run
from trainer.context.services import context_index_open
from trainer.evaluation.general import GENERAL_TASKS, general_files, general_score, general_tasks_build
from trainer.evaluation.harness import Candidate, models_compare
from trainer.evaluation.metrics import mcnemar_exact_p, paired_difference_ci
from trainer.evaluation.tasks import line_tasks_build, span_tasks_build
from trainer.models import BaseModel, Dataset, EvaluationReport, ModelVersion
from trainer.tools.dataset_files import dataset_files_read
from trainer.tools.scores import Scores
from trainer.versions import served_version

logger = logging.getLogger(__name__)


def _base_candidate(base: BaseModel) -> Candidate:
    if not base.gguf_path:
        raise EvaluationError(f"Base model {base.slug} has no GGUF to score.")
    return Candidate(
        "base", Path(base.gguf_path), fim_format_get(base.fim_format) if base.can_infill else None
    )


def _version_candidate(label: str, version: ModelVersion) -> Candidate:
    return Candidate(label, Path(version.gguf_path), fim_format_get(version.fim_format))


def evaluation_run(
    *,
    dataset: Dataset,
    version: ModelVersion | None = None,
    base: BaseModel | None = None,
    max_tasks: int = 300,
    max_span_tasks: int = 40,
    splits: tuple[str, ...] = ("heldout",),
    log: Callable[[str], None] = logger.info,
) -> EvaluationReport:
    """Score base, currently served model (if any, and not the candidate) and the candidate.
    `splits=("train", "heldout")` scores every file of a dataset no model trained on (extra
    evaluation repositories). The report row is created first (running); a failure is recorded on it."""
    base = base or (version.base if version else None)
    if base is None:
        raise EvaluationError("Nothing to evaluate: give a model version or a base model.")
    report = EvaluationReport.objects.create(dataset=dataset, version=version)
    arguments = {"max_tasks": max_tasks, "max_span_tasks": max_span_tasks, "splits": list(splits)}

    def work(stage: Stage) -> None:
        _evaluate(stage, base, version, arguments, log)

    stage_run(report, work, stage="evaluation", done_to=EvaluationReport.Status.DONE)
    return report


def _evaluate(stage: Stage, base: BaseModel, version: ModelVersion | None, arguments: dict, log) -> None:
    """Score every arm on the dataset's held-out lines and record the metrics on the report."""
    report: EvaluationReport = stage.row
    dataset = report.dataset

    def both(line: str) -> None:
        stage.log(line)
        log(line)

    models = _candidates(base, version)
    heldout = [f for split in arguments["splits"] for f in dataset_files_read(Path(dataset.path), split)]
    tasks = line_tasks_build(heldout, max_tasks=arguments["max_tasks"])
    spans = (
        span_tasks_build(heldout, max_tasks=arguments["max_span_tasks"])
        if arguments["max_span_tasks"]
        else []
    )
    both(f"{len(tasks)} held-out line tasks and {len(spans)} multi-line spans from {len(heldout)} files")
    index = context_index_open(dataset.pk) if settings.HEARTH_CONTEXT_EVAL else None
    if index is None and settings.HEARTH_CONTEXT_EVAL:
        both("this dataset has no code index: the arms with repository context are left out")
    metrics = models_compare(
        models,
        tasks,
        [f["text"] for f in heldout],
        log=both,
        span_tasks=spans,
        index=index,
        context_format=settings.HEARTH_CONTEXT_FORMAT,
    )
    general = _general_evaluate(models, dataset, heldout, metrics["mode"], arguments, both)
    if general is not None:
        metrics["general"] = general
    report.mode, report.metrics = metrics["mode"], metrics
    report.save(update_fields=["mode", "metrics", "updated_at"])
    stage.manifest(
        paths.evaluation_dir(report.pk),
        dataset=dataset.pk,
        inputs={
            "dataset_manifest": manifest_sha256(Path(dataset.path)),
            **{m.label: sha256_file(m.gguf) for m in models},
            "general_sample": (general or {}).get("sample_sha256"),
        },
        settings=arguments,
    )


def _general_evaluate(
    models: list[Candidate], dataset: Dataset, heldout: list[dict], mode: str, arguments: dict, log
) -> dict | None:
    """The general-code arm (trainer/evaluation/general.py): the base and the candidate on lines of
    the standard library, none of them a file of the dataset. None when the interpreter ships no
    sources to sample (the gate then cannot check forgetting, and says so)."""
    customer = [f["text"] for f in heldout]
    if "train" not in arguments["splits"]:
        customer += [f["text"] for f in dataset_files_read(Path(dataset.path), "train")]
    files = general_files(exclude_texts=customer)
    tasks = general_tasks_build(files, max_tasks=min(GENERAL_TASKS, arguments["max_tasks"]))
    if not tasks:
        log("no standard-library sources on this appliance: the general-code arm is left out")
        return None
    block = general_score(models, tasks, mode=mode, files=len(files), log=log)
    sample = "\n".join(f"{f['path']} {hashlib.sha256(f['text'].encode()).hexdigest()}" for f in files)
    block["sample_sha256"] = hashlib.sha256(sample.encode()).hexdigest()
    return block


def _candidates(base: BaseModel, version: ModelVersion | None) -> list[Candidate]:
    models = [_base_candidate(base)]
    served = served_version()
    if served is not None and (version is None or served.pk != version.pk) and served.base_id == base.pk:
        models.append(_version_candidate("served", served))
    if version is not None:
        models.append(_version_candidate("candidate", version))
    return models


# A stored decision is the sentence an admin reads, then the statistics behind it: pages split it
# (decision_split) and show the statistics one click away; a log line or a notification shows both.
DETAILS_SEPARATOR = "\nStatistics: "


def decision_split(text: str) -> tuple[str, str]:
    """A stored decision as (sentence, statistics); one stored before they were separated is all sentence."""
    sentence, _, details = text.partition(DETAILS_SEPARATOR)
    return sentence, details


@dataclass(frozen=True)
class PromotionDecision:
    """The gate's verdict on a candidate: a sentence a team lead reads, and the statistics behind it."""

    promote: bool
    summary: str  # the plain sentence: lines completed by each, lines better and worse, the verdict
    reference: str
    candidate_exact_match: float
    reference_exact_match: float
    p_value: float
    arm: str = "tuned"  # the candidate's arm the decision is about: the one it would be served as
    details: str = ""  # the statistics: arms, mode, interval, McNemar p, margin and alpha

    @property
    def reason(self) -> str:
        """What is stored on the report, logged and notified: the sentence, then the statistics."""
        return f"{self.summary}{DETAILS_SEPARATOR}{self.details}" if self.details else self.summary


def _points(fraction: float) -> str:
    """A difference in exact match as signed percentage points: +15, -2.5, 0."""
    value = round(fraction * 100, 1)
    if value == 0:
        return "0"
    return f"{value:+.1f}".removesuffix(".0")


def _reference_name(reference: str, served_pk: int | None, version_served: bool) -> str:
    """The arm the candidate is compared with, named for a reader: which model, and whether it is
    the one served now (the base is, only when no version is)."""
    context = ", with repository context" if reference.endswith("+context") else ""
    if reference.startswith("served"):
        return f"{f'version {served_pk}' if served_pk else 'the version'} (served now{context})"
    return "the base model" if version_served else "the base model (served now)"


def _verdict(
    completed: str,
    changed: str,
    *,
    paired: bool,
    gain: float,
    p: float,
    interval,
    alpha: float,
    margin: float,
) -> str:
    """The gate's sentence: promoted, or why not (no paired results, no better, too close, too small)."""
    lo, hi = interval
    if paired and gain > margin and p < alpha:
        return (
            f"Promoted: {completed}; {changed}; gain {_points(gain)} points "
            f"(95% interval {_points(lo)} to {_points(hi)})."
        )
    if not paired:
        return (
            f"Not promoted: {completed}, but the evaluation kept no line-by-line results to compare "
            "them fairly."
        )
    if gain <= 0:
        return f"Not promoted: {completed}; {changed} — no better."
    if p >= alpha:
        return f"Not promoted: {completed}; {changed} — too close to call."
    return (
        f"Not promoted: {completed}; {changed} — better by {_points(gain).lstrip('+')} points, not by more than "
        f"the {_points(margin).lstrip('+')} points required."
    )


@dataclass(frozen=True)
class Forgetting:
    """General code (trainer/evaluation/general.py): the candidate's plain arm against the base it was
    trained from, on the same lines of code the customer did not write."""

    source: str  # "the Python 3.11 standard library"
    tasks: int
    before: int  # lines the base completed exactly
    after: int  # lines the candidate completed exactly
    wins: int
    losses: int
    change: float  # exact match, candidate minus base (negative: it forgot)
    p: float
    forgot: bool  # a drop over the allowed one, and significant

    @property
    def phrase(self) -> str:
        """-3.5 points on the Python 3.11 standard library"""
        return f"{_points(self.change)} points on {self.source}"


def forgetting_judge(scores: Scores, *, max_drop: float, alpha: float) -> Forgetting | None:
    """Did the candidate forget general code? Only when its exact match there fell by more than
    `max_drop` below the base's and an exact McNemar test on the lines where exactly one of them is
    right rejects "no worse" at `alpha` (two-sided, as the gate's own test): a few lines' loss is
    noise, as a few lines' lead is. None when the report has no paired general-code arms."""
    general = scores.general
    if general is None or not general.paired():
        return None
    cand, base = general.arm("tuned"), general.arm("base")
    wins = sum(1 for c, b in zip(cand.hits, base.hits) if c and not b)
    losses = sum(1 for c, b in zip(cand.hits, base.hits) if b and not c)
    p = mcnemar_exact_p(wins, losses)
    change = general.change
    return Forgetting(
        general.source,
        cand.tasks,
        sum(base.hits),
        sum(cand.hits),
        wins,
        losses,
        change,
        p,
        forgot=-change > max_drop and p < alpha,
    )


def _with_general(
    verdict: str, forgetting: Forgetting | None, *, won: bool, gain: float, head: str, reference: str
) -> str:
    """The gate's sentence with general code in it: a win on the customer's code that forgot general
    code is refused for it; a promotion states both figures; a refusal for another reason that also
    forgot says so. General code is always measured against the base model: said so when the gain on
    the customer's code is against a served version."""
    if forgetting is None:
        return verdict
    if won and forgetting.forgot:
        return (
            f"Not promoted: {head}; gain {_points(gain)} points on your code, but it forgot general code: "
            f"{forgetting.phrase} (the base model completed {forgetting.before:,} of {forgetting.tasks:,} "
            f"lines exactly, the custom model {forgetting.after:,})."
        )
    if won:
        return (
            f"{verdict} Your code: {_points(gain)} points; general code: {_points(forgetting.change)} points "
            f"{'' if reference == 'base' else 'against the base model '}on {forgetting.source}."
        )
    if forgetting.forgot:
        return f"{verdict} It also forgot general code: {forgetting.phrase}."
    return verdict


def _forgetting_details(forgetting: Forgetting | None, max_drop: float, alpha: float) -> str:
    if forgetting is None:
        return " General code was not scored: forgetting was not checked."
    return (
        f" General code ({forgetting.source}, {forgetting.tasks} lines, tuned against base): exact match "
        f"{forgetting.after / max(1, forgetting.tasks):.3f} against {forgetting.before / max(1, forgetting.tasks):.3f}; "
        f"{forgetting.wins} better, {forgetting.losses} worse; McNemar exact p = {forgetting.p:.3g}. A candidate "
        f"is refused for forgetting when it falls by more than {max_drop:.3f} with p < {alpha:g}."
    )


def promotion_decide(
    scores: Scores,
    *,
    margin: float,
    alpha: float = 0.05,
    served_arm: str | None = None,
    served_pk: int | None = None,
    forgetting_max_drop: float = 0.02,
) -> PromotionDecision:
    """Promote only on a paired, significant win on exact match over the arm served now, without a
    significant loss on general code.

    The candidate competes with its best arm (with or without repository context, the one it would
    be served as). The reference is the served version's arm (`served_arm`: "served" or
    "served+context"), or the base as it is served without a version: without context. All arms
    answered the same held-out tasks, so the comparison is paired: the candidate must beat the
    reference by more than `margin`, and an exact McNemar test on the tasks where exactly one of them
    is right must reject "no better" at `alpha` (two-sided). A few lines' lead is noise. Then it must
    not have forgotten general code (`forgetting_judge`, with `forgetting_max_drop`).
    `served_pk` names the version served now in the sentence (looked up when a version is served
    and it is not given).
    """
    if scores.has_arm("served"):
        reference = served_arm if served_arm and scores.has_arm(served_arm) else "served"
    else:
        reference = "base"
    if served_pk is None and served_arm is not None:
        served = served_version()
        served_pk = served.pk if served else None
    version_served = served_pk is not None or served_arm is not None or scores.has_arm("served")
    arm = scores.best_arm("tuned")
    cand, ref = scores.arm(arm), scores.arm(reference)
    wins = sum(1 for c, r in zip(cand.hits, ref.hits) if c and not r)
    losses = sum(1 for c, r in zip(cand.hits, ref.hits) if r and not c)
    paired = bool(cand.hits) and len(cand.hits) == len(ref.hits)
    p = mcnemar_exact_p(wins, losses) if paired else 1.0
    lo, hi = paired_difference_ci(list(cand.hits), list(ref.hits)) if paired else (0.0, 0.0)
    gain = cand.exact_match - ref.exact_match
    won = paired and gain > margin and p < alpha
    forgetting = forgetting_judge(scores, max_drop=forgetting_max_drop, alpha=alpha)
    promote = won and not (forgetting and forgetting.forgot)

    ref_name = _reference_name(reference, served_pk, version_served)
    # The candidate's arm in parentheses, as the arms table below the decision names it.
    cand_name = f"the custom model{' with repository context' if arm.endswith('+context') else ''} ({arm})"
    cand_lines = sum(cand.hits) if paired else round(cand.exact_match * cand.tasks)
    ref_lines = sum(ref.hits) if paired else round(ref.exact_match * ref.tasks)
    completed = (
        f"{cand_name} completed {cand_lines:,} of {cand.tasks:,} held-out lines exactly, "
        f"{ref_name} {ref_lines:,}"
    )
    changed = f"{wins:,} lines got better and {losses:,} worse"
    verdict = _verdict(
        completed, changed, paired=paired, gain=gain, p=p, interval=(lo, hi), alpha=alpha, margin=margin
    )
    summary = _with_general(
        verdict, forgetting, won=won, gain=gain, head=f"{completed}; {changed}", reference=reference
    )
    evidence = (
        f"{wins} better, {losses} worse; gain {gain:+.3f} (95% interval {lo:+.3f} to {hi:+.3f}); "
        f"McNemar exact p = {p:.3g}"
        if paired
        else "no per-line results to pair"
    )
    details = (
        f"{arm} against {reference}, {scores.mode} mode, {cand.tasks} held-out lines: exact match "
        f"{cand.exact_match:.3f} against {ref.exact_match:.3f}; {evidence}. Promotion needs a gain over "
        f"{margin:.3f} and p < {alpha:g}."
    )
    if reference == "base" and version_served:
        details += (
            f" {f'Version {served_pk}' if served_pk else 'A version'} is served now but was not scored "
            "(it is built on another base model): the base model is the reference."
        )
    details += _forgetting_details(forgetting, forgetting_max_drop, alpha)
    return PromotionDecision(promote, summary, reference, cand.exact_match, ref.exact_match, p, arm, details)


def code_tradeoff(scores: Scores) -> str:
    """What fine-tuning did, against the base model it started from, as pages show it: "your code:
    +12 points; general code: -1.5 points" (the candidate's served arm on the held-out lines, its plain
    arm on the standard library). Empty for a report without a candidate."""
    if not (scores.has_arm("tuned") and scores.has_arm("base")):
        return ""
    own = scores.arm(scores.best_arm("tuned")).exact_match - scores.arm("base").exact_match
    text = f"your code: {_points(own)} points"
    general = scores.general
    if general is not None and general.has_arm("base") and general.has_arm("tuned"):
        text += f"; general code: {_points(general.change)} points"
    return text


@dataclass(frozen=True)
class DecisionFigures:
    """A finished evaluation restated as figures, for a page that asks an admin to act on it: how many
    held-out lines the candidate's arm completed that the reference did not (and the reverse), and
    the difference in exact match with its paired 95% interval."""

    arm: str  # the candidate's arm: the one it is served as
    reference: str  # the arm it was compared with: "base", "served" or "served+context"
    reference_pk: int | None  # the version served (and scored) then; None for the base or one since deleted
    tasks: int
    wins: int  # lines only the candidate completed exactly
    losses: int  # lines only the reference completed exactly
    gain: float  # exact match, candidate minus reference (a fraction)
    interval: tuple[float, float]

    @property
    def reference_name(self) -> str:
        if self.reference == "base":
            return "the base model"
        return f"version {self.reference_pk}" if self.reference_pk else "the version served then"

    @property
    def gain_points(self) -> str:
        """The gain as a reader sees it: +3.5 points (95% interval -1 to +8)."""
        lo, hi = self.interval
        return f"{_points(self.gain)} points (95% interval {_points(lo)} to {_points(hi)})"


def decision_figures(report: EvaluationReport) -> DecisionFigures | None:
    """The figures behind the gate's verdict on `report`, recomputed from its per-line results with the
    arms the gate compared: the candidate's best arm against the served version's arm when one was
    scored (with context if that version serves with it), else the base. None when the report kept no
    line-by-line results for both."""
    scores = report.scores
    if not scores.has_arm("tuned"):
        return None
    reference_pk, reference = None, "base"
    if scores.has_arm("served"):
        reference = "served"
        gguf = (report.metrics.get("models") or {}).get("served", {}).get("gguf")
        served = ModelVersion.objects.filter(gguf_path=gguf).first() if gguf else None
        reference_pk = served.pk if served else None
        if served and served.serves_context and scores.has_arm("served+context"):
            reference = "served+context"
    if not scores.has_arm(reference):
        return None
    arm = scores.best_arm("tuned")
    cand, ref = scores.arm(arm), scores.arm(reference)
    if not cand.hits or len(cand.hits) != len(ref.hits):
        return None
    return DecisionFigures(
        arm=arm,
        reference=reference,
        reference_pk=reference_pk,
        tasks=len(cand.hits),
        wins=sum(1 for c, r in zip(cand.hits, ref.hits) if c and not r),
        losses=sum(1 for c, r in zip(cand.hits, ref.hits) if r and not c),
        gain=cand.exact_match - ref.exact_match,
        interval=paired_difference_ci(list(cand.hits), list(ref.hits)),
    )
