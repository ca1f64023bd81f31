"""The admin index as a dashboard: what is served and since when, runs in progress, alerts, usage."""

from __future__ import annotations

import shutil
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from webui.charts import bar_chart

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


def _usage() -> dict:
    from inference.selectors import usage_summary

    now = timezone.now()
    periods = {
        days: usage_summary(since=now - timedelta(days=days), until=now)["overall"] for days in (7, 28)
    }
    rows = [(f"{k} days · requests", float(v["requests"]), None) for k, v in periods.items()]
    latency = [
        (f"{k} days · p{q}", float(v[f"latency_ms_p{q}"] or 0), None)
        for k, v in periods.items()
        for q in (50, 90)
    ]
    acceptance = [(f"{k} days", float(v["acceptance_rate"] or 0), None) for k, v in periods.items()]
    return {
        "periods": periods,
        "requests_chart": bar_chart(rows, fmt="{:.0f}", title="requests"),
        "latency_chart": bar_chart(latency, fmt="{:.0f} ms", title="latency"),
        "acceptance_chart": bar_chart(acceptance, scale_max=1.0, fmt="{:.2f}", title="acceptance rate"),
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
