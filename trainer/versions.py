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
        version.save(update_fields=["promoted_at", "override_reason"])
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
