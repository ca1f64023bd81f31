"""The admin index as a dashboard: the first steps until they are done, what is served and since when,
runs in progress, alerts, usage (webui/usage.py)."""

from __future__ import annotations

import shutil
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

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


def _first_steps() -> dict:
    """The first-run checklist: which of the four steps to a completion in an IDE are done. A token
    counts as used once it authenticated a request (with telemetry off no completion is recorded)."""
    from django.urls import reverse

    from inference.models import ApiToken, CompletionRecord
    from trainer.models import Repository, TrainingRun

    done = {
        "repository": Repository.objects.exists(),
        "run": TrainingRun.objects.exists(),
        "token": ApiToken.objects.exists(),
        "ide": ApiToken.objects.filter(last_used_at__isnull=False).exists()
        or CompletionRecord.objects.exists(),
    }
    return {
        "steps_done": done,
        "steps_left": not all(done.values()),
        # The API's base path, for "point an IDE at" (the page adds the scheme and host it was asked on).
        "api_base_path": reverse("openai-completions").removesuffix("/completions"),
    }


def override_flag(version) -> SafeString | None:
    """The warning shown wherever `version` appears as served while it is served against the promotion
    gate (until another promotion): the admin's reason, who gave it and when, from the audit log."""
    from appliance.models import AuditEntry

    if version is None or not version.served_against_gate:
        return None
    entry = AuditEntry.objects.filter(
        action="version.promote_override", target=f"version {version.pk}"
    ).first()
    actor = entry.actor if entry and entry.actor else "an admin"
    at = entry.at if entry else version.promoted_at
    return format_html(
        '<ul class="messagelist hearth-override" style="margin:0 0 .8em;padding:0"><li class="warning">'
        "<b>Served against the promotion gate:</b> {} — by {} {}</li></ul>",
        version.override_reason,
        actor,
        f"at {at:%Y-%m-%d %H:%M} UTC" if at else "",
    )


def _canary(version) -> dict:
    from webui.canary import canary_summary

    return canary_summary(version)


def dashboard_context() -> dict:
    from trainer.models import BaseModel, TrainingRun
    from trainer.versions import canary_version, served_version
    from webui.usage import usage_charts, usage_overview

    served = served_version()
    canary = canary_version()
    base = BaseModel.objects.filter(slug=settings.HEARTH_BASE_MODEL).first() if not served else None
    now = timezone.now()
    usage = usage_overview(now)
    return {
        "served": served,
        "served_flag": override_flag(served),
        "served_base": base,
        **(_canary(canary) if canary is not None else {}),
        "runs_active": TrainingRun.objects.filter(
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        ).select_related("base"),
        "alerts": _alerts(),
        **_first_steps(),
        **usage,
        **(usage_charts(now) if usage["recorded"] else {}),
    }
