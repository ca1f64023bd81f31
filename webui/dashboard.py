"""The admin index as a dashboard: what is served and since when, runs in progress, alerts, usage."""

from __future__ import annotations

import shutil
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from webui.charts import bar_chart

DISK_ALERT_FRACTION = 0.9
STUCK_AFTER = timedelta(hours=2)


def _alerts() -> list[str]:
    from trainer.models import Dataset, ModelVersion, Repository, TrainingRun

    now, alerts = timezone.now(), []
    for run in TrainingRun.objects.filter(
        status=TrainingRun.Status.FAILED, updated_at__gte=now - timedelta(days=7)
    ):
        alerts.append(f"Training run {run.pk} failed: {run.status_reason}")
    for repo in Repository.objects.filter(status=Repository.Status.FAILED):
        alerts.append(f"Repository {repo.name} failed to sync: {repo.status_reason}")
    stuck = [
        (Dataset, Dataset.Status.BUILDING),
        (ModelVersion, ModelVersion.Status.BUILDING),
        (Repository, Repository.Status.SYNCING),
    ]
    for model, status in stuck:
        for row in model.objects.filter(status=status, updated_at__lt=now - STUCK_AFTER):
            alerts.append(
                f"{model._meta.verbose_name.capitalize()} {row} has been {status} since "
                f"{row.updated_at:%Y-%m-%d %H:%M} UTC"
            )
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
