"""The admin index as a dashboard: what is served and since when, runs in progress, alerts, usage."""

from __future__ import annotations

import shutil
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from webui.charts import line_chart

DISK_ALERT_FRACTION = 0.9


def _alerts() -> list[str]:
    from trainer.models import Repository, TrainingRun

    now, alerts = timezone.now(), []
    for run in TrainingRun.objects.filter(
        status=TrainingRun.Status.FAILED, updated_at__gte=now - timedelta(days=7)
    ):
        alerts.append(f"Training run {run.pk} failed: {run.status_reason}")
    for repo in Repository.objects.filter(status=Repository.Status.FAILED):
        alerts.append(f"Repository {repo.name} failed to sync: {repo.status_reason}")
    from trainer.watchdog import WATCHED, row_label

    silent_since = now - timedelta(seconds=settings.HEARTH_WORK_HEARTBEAT_S * 3)
    for model in WATCHED:
        for row in model.objects.filter(status__in=model.WORKING, heartbeat_at__lt=silent_since):
            alerts.append(
                f"{row_label(row).capitalize()} is {row.status} but its worker ({row.worker}) has been "
                f"silent since {row.heartbeat_at:%Y-%m-%d %H:%M} UTC; the watchdog fails it after "
                f"{settings.HEARTH_WORK_STUCK_S:.0f} s"
            )
        if model is Repository:
            continue  # a failed sync is listed above
        released = model.objects.filter(
            status=model.STUCK_TO,
            status_reason__startswith="Stuck in",
            updated_at__gte=now - timedelta(days=7),
        )
        for row in released:
            alerts.append(f"{row_label(row).capitalize()} failed: {row.status_reason}")
    disk = shutil.disk_usage(settings.HEARTH_HOME)
    if disk.used / disk.total > DISK_ALERT_FRACTION:
        alerts.append(f"Disk nearly full: {disk.used / disk.total:.0%} used, {disk.free / 1e9:.1f} GB free")
    return alerts


def _promotion_marks(days: int) -> list[tuple[float, str]]:
    """Each promotion in the window, as (days from today, label), for the usage charts."""
    from trainer.models import ModelVersion

    now = timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    marks = []
    for version in ModelVersion.objects.filter(promoted_at__gte=now - timedelta(days=days)):
        marks.append(((version.promoted_at - today).total_seconds() / 86400, f"v{version.pk} promoted"))
    return marks


def _usage() -> dict:
    from inference.selectors import usage_daily, usage_summary

    now = timezone.now()
    summaries = {days: usage_summary(since=now - timedelta(days=days), until=now) for days in (7, 28)}
    daily = usage_daily(days=28, until=now)
    marks = _promotion_marks(28)

    def series(key: str, label: str) -> tuple[str, list[tuple[float, float]]]:
        return label, [(row["offset"], float(row[key])) for row in daily if row[key] is not None]

    breakdown = []
    for kind, key in (("language", "by_language"), ("model", "by_model")):
        names = sorted(set(summaries[7][key]) | set(summaries[28][key]))
        for name in names:
            breakdown.append(
                {
                    "kind": kind,
                    "name": name or "unknown",
                    **{f"d{d}": summaries[d][key].get(name) for d in (7, 28)},
                }
            )
    return {
        "periods": {days: summary["overall"] for days, summary in summaries.items()},
        "breakdown": breakdown,
        "requests_chart": line_chart(
            [series("requests", "requests")],
            x_label="days ago (0 = today)",
            y_label="requests",
            marks=marks,
            x_range=(-27, 0),
        ),
        "acceptance_chart": line_chart(
            [series("acceptance_rate", "acceptance rate")],
            x_label="days ago",
            y_label="accepted",
            marks=marks,
            x_range=(-27, 0),
        ),
        "latency_chart": line_chart(
            [series("latency_ms_p50", "p50"), series("latency_ms_p95", "p95")],
            x_label="days ago",
            y_label="latency (ms)",
            marks=marks,
            x_range=(-27, 0),
        ),
    }


def dashboard_context() -> dict:
    from trainer.models import BaseModel, TrainingRun
    from trainer.versions import served_version

    served = served_version()
    base = BaseModel.objects.filter(slug=settings.HEARTH_BASE_MODEL).first() if not served else None
    return {
        "served": served,
        "served_base": base,
        "runs_active": TrainingRun.objects.filter(
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        ).select_related("base"),
        "alerts": _alerts(),
        **_usage(),
    }
