"""Model version lifecycle: promote, roll back, retire, delete. Exactly one version is served;
with none promoted the engine serves the base."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from appliance.errors import HearthError
from trainer.models import ModelVersion


def served_version(*, exclude_pk: int | None = None) -> ModelVersion | None:
    """The one version being served (the latest promoted), or None: then the base is served."""
    return (
        ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED)
        .exclude(pk=exclude_pk or -1)
        .select_related("base")
        .order_by("-promoted_at")
        .first()
    )


def canary_version() -> ModelVersion | None:
    """The candidate served to a share of developers beside the served model, or None."""
    return (
        ModelVersion.objects.filter(status=ModelVersion.Status.CANDIDATE, canary_percent__gt=0)
        .select_related("base")
        .order_by("-canary_started_at")
        .first()
    )


CANARY_PERCENT_RANGE = (1, 99)


def model_version_canary_start(
    *, version: ModelVersion, percent: int, reason: str = "", actor: str = "", ip: str | None = None
) -> ModelVersion:
    """Serve `version` to `percent` % of developers (chosen per user) beside the served model.

    One canary at a time; changing the share of the running canary keeps its start (the same users
    stay in it as it grows). A version the gate kept needs a reason, as for a promotion."""
    from appliance.audit import audit_record

    low, high = CANARY_PERCENT_RANGE
    if not isinstance(percent, int) or not low <= percent <= high:
        raise HearthError(
            f"The canary's share must be a whole percentage from {low} to {high} (it is {percent})."
        )
    if version.status != ModelVersion.Status.CANDIDATE:
        raise HearthError(f"Version {version.pk} is {version.status}: only a candidate can be a canary.")
    if not version.gguf_path or not Path(version.gguf_path).is_file():
        raise HearthError(f"Version {version.pk} has no GGUF file on disk; it cannot be served.")
    reason = reason.strip()
    if version.gate_passed is not True and not reason:
        raise PromotionNeedsReason(
            f"Version {version.pk} did not pass the promotion gate: give a reason for trying it on developers."
        )
    with transaction.atomic():
        other = (
            ModelVersion.objects.select_for_update()
            .filter(status=ModelVersion.Status.CANDIDATE, canary_percent__gt=0)
            .exclude(pk=version.pk)
            .first()
        )
        if other is not None:
            raise HearthError(
                f"Version {other.pk} is the canary now: promote it or roll it back before starting another."
            )
        row = ModelVersion.objects.select_for_update().get(pk=version.pk)
        before = row.canary_percent
        row.canary_percent = percent
        if not before:
            row.canary_started_at, row.canary_verdict = timezone.now(), ""
        row.save(update_fields=["canary_percent", "canary_started_at", "canary_verdict"])
        detail = f"{before}% → {percent}% of developers" + (f"; reason: {reason}" if reason else "")
        audit_record(
            action="version.canary", actor=actor, target=f"version {version.pk}", detail=detail, ip=ip
        )
    version.refresh_from_db()
    return version


def model_version_canary_end(
    *, version: ModelVersion, actor: str = "", ip: str | None = None
) -> ModelVersion:
    """Roll the canary back: every developer gets the served model again; the version stays a candidate."""
    from appliance.audit import audit_record

    with transaction.atomic():
        row = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if not row.canary_percent:
            return row
        share = row.canary_percent
        row.canary_percent = 0
        row.save(update_fields=["canary_percent"])
        audit_record(
            action="version.canary_rollback",
            actor=actor,
            target=f"version {version.pk}",
            detail=f"was served to {share}% of developers",
            ip=ip,
        )
    version.refresh_from_db()
    return version


class PromotionNeedsReason(HearthError):
    """Serving a version the gate did not promote needs the admin's reason."""


def model_version_promote(
    *, version: ModelVersion, reason: str = "", actor: str = "", ip: str | None = None
) -> ModelVersion:
    """Serve `version` (a candidate, or a retired one: a roll-back); the served one is retired.

    A version whose evaluation did not pass the promotion gate is served only with a `reason`: it is
    kept on the version (flagged on the dashboard while it is served), written to the audit log and
    sent to every admin."""
    from appliance.audit import audit_record
    from appliance.notifications import notify

    if version.status == ModelVersion.Status.PROMOTED:
        return version
    if not version.gguf_path or not Path(version.gguf_path).is_file():
        raise HearthError(f"Version {version.pk} has no GGUF file on disk; it cannot be served.")
    against_gate = version.gate_passed is not True
    reason = reason.strip()
    if against_gate and not reason:
        verdict = (
            "did not beat the model served now" if version.gate_passed is False else "was never evaluated"
        )
        raise PromotionNeedsReason(
            f"Version {version.pk} {verdict}: serving it changes every developer's completions, so give "
            "a reason for overriding the promotion gate."
        )
    with transaction.atomic():
        for current in ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.PROMOTED):
            current.transition(ModelVersion.Status.RETIRED, reason=f"replaced by version {version.pk}")
        version.transition(ModelVersion.Status.PROMOTED)
        version.promoted_at = timezone.now()
        version.override_reason = reason if against_gate else ""
        version.canary_percent = 0  # a canary promoted to everyone is simply served
        version.save(update_fields=["promoted_at", "override_reason", "canary_percent"])
        if against_gate:
            detail = f"served against the promotion gate; reason: {reason}"
            audit_record(
                action="version.promote_override",
                actor=actor,
                target=f"version {version.pk}",
                detail=detail,
                ip=ip,
            )
            notify(
                title=f"Version {version.pk} is served although the promotion gate kept it",
                body=f"{actor or 'An admin'} promoted it: {reason}",
                level="info",
            )
    return version


def model_version_retire(*, version: ModelVersion) -> ModelVersion:
    """Stop serving `version`; with no promoted version the engine serves the base model."""
    if version.canary_percent:
        model_version_canary_end(version=version)
    version.transition(ModelVersion.Status.RETIRED, reason="retired by an admin; the base model is served")
    return version


def model_version_delete(*, version: ModelVersion) -> None:
    """Delete a version and its files; if it was served, the base model is served instead."""
    if version.status == ModelVersion.Status.PROMOTED:
        model_version_retire(version=version)
    path = Path(version.path) if version.path else None
    version.delete()
    if path is not None and path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
