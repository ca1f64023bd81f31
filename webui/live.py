"""What a training run's page shows, from its dataset's build through the fine-tune to the version's
export, evaluation and decision: one context read from the rows at one moment. The page and the
fragment it polls render the same template from it, so no part of the page can disagree with
another, and the run's status is the one status word the page shows."""

from __future__ import annotations

from django.utils import timezone

from trainer.models import Dataset, ModelVersion, TrainingRun
from webui.charts import line_chart, progress_bar
from webui.templatetags.hearth_format import duration

LOG_TAIL_LINES = 30
ACTIVE = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)
RunStatus, DatasetStatus, VersionStatus = TrainingRun.Status, Dataset.Status, ModelVersion.Status


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


def _since(moment) -> str:
    return duration((timezone.now() - moment).total_seconds()) if moment else "–"


def _phase(run: TrainingRun, dataset: Dataset, total: int) -> str:
    """What is happening now, in one sentence that starts with the run's status."""
    status = run.status
    if status == RunStatus.QUEUED:
        if dataset.status == DatasetStatus.PENDING:
            return f"queued: dataset {dataset.pk} is built first; waiting for a worker to build it"
        if dataset.status == DatasetStatus.BUILDING:
            return f"queued: building dataset {dataset.pk} ({_since(dataset.updated_at)} so far)"
        if dataset.status == DatasetStatus.FAILED:
            return f"queued: dataset {dataset.pk} failed, so this run cannot train"
        if run.attempts:
            return f"queued: waiting for a training worker to resume it (attempt {run.attempts + 1})"
        return f"queued: dataset {dataset.pk} is ready; waiting for a training worker"
    steps = f"step {run.step:,} of {total:,} ({run.step / total:.0%})" if total else ""
    if status == RunStatus.RUNNING:
        return f"running: {steps}" if steps else "running: loading the base model and building the samples"
    if status == RunStatus.SUCCEEDED:
        return f"succeeded: {run.step:,} of {total:,} steps" if total else "succeeded"
    # failed or cancelled
    if dataset.status == DatasetStatus.FAILED:
        return f"{status}: dataset {dataset.pk} failed, before training"
    return f"{status} at {steps}" if steps and run.step else f"{status} before training started"


def _stages(run: TrainingRun, dataset: Dataset, total: int, version: ModelVersion | None) -> list[dict]:
    """The four stages of a custom model, each done, now, waiting or failed, with a short line."""
    out = []
    ds_state = {
        DatasetStatus.READY: "done",
        DatasetStatus.FAILED: "failed",
        DatasetStatus.BUILDING: "now",
    }.get(dataset.status, "now" if run.status == RunStatus.QUEUED else "waiting")
    ds_text = {
        DatasetStatus.PENDING: "waiting for a worker" if run.status == RunStatus.QUEUED else "never built",
        DatasetStatus.BUILDING: f"building, {_since(dataset.updated_at)} so far",
        DatasetStatus.READY: f"{dataset.train_files:,} training files, {dataset.heldout_files:,} held out",
        DatasetStatus.FAILED: dataset.status_reason or "failed",
    }[dataset.status]
    out.append({"title": f"Dataset {dataset.pk}", "state": ds_state, "text": ds_text, "dataset": True})

    if run.status == RunStatus.QUEUED:
        train = (
            ("now", "waiting for a training worker")
            if dataset.status == DatasetStatus.READY
            else ("waiting", "")
        )
    elif run.status == RunStatus.RUNNING:
        train = ("now", f"step {run.step:,} of {total:,}" if total else "starting")
    elif run.status == RunStatus.SUCCEEDED:
        train = ("done", f"{run.step:,} steps")
    else:
        started = bool(total) or dataset.status == DatasetStatus.READY
        train = ("failed", run.status_reason or run.status) if started else ("waiting", "")
    out.append({"title": "Fine-tune", "state": train[0], "text": train[1]})

    if version is None:
        after = ("now", "starting") if run.status == RunStatus.SUCCEEDED else ("waiting", "")
    elif version.status == VersionStatus.BUILDING:
        after = ("now", "export to GGUF, then evaluation on the held-out lines")
    elif version.status == VersionStatus.FAILED:
        after = ("failed", version.status_reason or "failed")
    else:
        after = ("done", f"version {version.pk}")
    out.append({"title": "Export and evaluation", "state": after[0], "text": after[1]})

    verdict = {
        VersionStatus.PROMOTED: "promoted: it is served",
        VersionStatus.CANDIDATE: "kept as a candidate",
        VersionStatus.RETIRED: "retired",
    }.get(version.status if version else "", "")
    out.append({"title": "Decision", "state": "done" if verdict else "waiting", "text": verdict})
    return out


def run_live_context(run: TrainingRun) -> dict:
    """Status, what happens now, the stages, the dataset build while it runs, progress, ETA, tokens/s,
    loss and held-out-loss chart, log tail, and the version built from the run (export, evaluation,
    the decision sentence with its statistics) once training has finished."""
    from webui.reports import decision_html

    run = TrainingRun.objects.select_related("dataset", "base").get(pk=run.pk)  # one moment, fresh
    dataset = run.dataset
    points = list(run.progress.order_by("step", "id"))
    last = points[-1] if points else None
    total = run.total_steps or (last.total_steps if last else 0)
    fraction = run.step / total if total else (1.0 if run.status == RunStatus.SUCCEEDED else 0.0)
    version = ModelVersion.objects.filter(run=run).first()
    report = version.reports.order_by("-created_at").first() if version else None
    building = version is not None and version.status == VersionStatus.BUILDING
    trained = run.status != RunStatus.QUEUED or bool(points)
    return {
        "run": run,
        "status": run.status,
        "phase": _phase(run, dataset, total),
        "active": run.status in ACTIVE or building or (run.status == RunStatus.SUCCEEDED and version is None),
        "stages": _stages(run, dataset, total, version),
        "dataset": dataset,
        "dataset_log": _tail(dataset.log) if dataset.status != DatasetStatus.READY else "",
        "show_dataset": dataset.status != DatasetStatus.READY,
        "trained": trained,
        "progress": progress_bar(fraction, _phase(run, dataset, total)),
        "point": last,
        "eta": duration(last.eta_s) if last and last.eta_s and run.status == RunStatus.RUNNING else "–",
        "tokens_per_s": f"{last.tokens_per_s:,.0f}" if last and last.tokens_per_s else "–",
        "chart": line_chart(
            [
                ("loss", [(p.step, p.loss) for p in points if p.loss is not None]),
                ("held-out loss", [(p.step, p.eval_loss) for p in points if p.eval_loss is not None]),
            ],
            x_label="optimizer step",
            y_label="loss (nats/token)",
        )
        if points
        else "",
        "log_tail": _tail(run.log),
        "can_cancel": run.status in ACTIVE,
        "worker": (
            f"{run.worker}, last sign of life {_since(run.heartbeat_at)} ago"  # host and pid
            if run.status == RunStatus.RUNNING and run.worker
            else ""
        ),
        "settings_rows": _settings_rows(run.settings),
        "summary_rows": _summary_rows(run.summary or {}),
        "version": version,
        "version_building": building,
        "version_log": _tail(version.log) if version else "",
        "decision": decision_html(report.decision) if report and report.decision else "",
    }


def _settings_rows(values: dict) -> list[tuple[str, object]]:
    from trainer.training.config import label

    return [(label(name), value) for name, value in values.items()]


# What a finished run's summary says, in the order an admin reads it (the rest stays in summary.json).
SUMMARY_ROWS = (
    ("method_reason", "Method chosen because"),
    ("train_tokens", "Training tokens"),
    ("tokens_seen", "Tokens seen"),
    ("tokens_per_s", "Tokens/s"),
    ("processes", "Processes"),
    ("learning_rate", "Learning rate used"),
    ("first_loss", "First loss"),
    ("final_loss", "Final loss"),
    ("best_eval_loss", "Best held-out loss"),
    ("early_stopped", "Stopped early"),
    ("accepted_completions", "Accepted completions used"),
    ("accepted_developers", "Developers they came from"),
)


def _summary_rows(summary: dict) -> list[tuple[str, str]]:
    def shown(value) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return [(title, shown(summary[key])) for key, title in SUMMARY_ROWS if summary.get(key) is not None]
