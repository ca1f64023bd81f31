"""What a training run's page shows while it trains (and after): read from its rows, nothing else."""

from __future__ import annotations

from trainer.models import ModelVersion, TrainingRun
from webui.charts import line_chart, progress_bar

LOG_TAIL_LINES = 30
ACTIVE = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return (
        f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
        if seconds >= 3600
        else f"{seconds // 60} min {seconds % 60:02d} s"
    )


def run_live_context(run: TrainingRun) -> dict:
    """Progress bar, ETA, tokens/s, loss and held-out-loss chart, log tail, attempts, and the version
    built from it (export, evaluation, gate) once training has finished."""
    points = list(run.progress.order_by("step", "id"))
    last = points[-1] if points else None
    total = run.total_steps or (last.total_steps if last else 0)
    fraction = run.step / total if total else (1.0 if run.status == TrainingRun.Status.SUCCEEDED else 0.0)
    label = (
        f"step {run.step} of {total or '?'} ({fraction:.0%})"
        if total
        else f"{run.status}: waiting for a worker"
    )
    chart = line_chart(
        [
            ("loss", [(p.step, p.loss) for p in points if p.loss is not None]),
            ("held-out loss", [(p.step, p.eval_loss) for p in points if p.eval_loss is not None]),
        ],
        x_label="optimizer step",
        y_label="loss (nats/token)",
    )
    version = ModelVersion.objects.filter(run=run).first()
    report = version.reports.order_by("-created_at").first() if version else None
    building = version is not None and version.status == ModelVersion.Status.BUILDING
    return {
        "run": run,
        "active": run.status in ACTIVE
        or building
        or (run.status == TrainingRun.Status.SUCCEEDED and version is None),
        "progress": progress_bar(fraction, label),
        "point": last,
        "eta": _duration(last.eta_s if last and run.status == TrainingRun.Status.RUNNING else None),
        "tokens_per_s": f"{last.tokens_per_s:.0f}" if last and last.tokens_per_s else "–",
        "chart": chart,
        "log_tail": "\n".join(run.log.splitlines()[-LOG_TAIL_LINES:]),
        "can_cancel": run.status in ACTIVE,
        "version": version,
        "version_log": "\n".join(version.log.splitlines()[-LOG_TAIL_LINES:]) if version else "",
        "decision": report.decision if report else "",
    }
