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


def model_version_promote(*, version: ModelVersion) -> ModelVersion:
    """Serve `version` (a candidate, or a retired one: a roll-back); the served one is retired."""
    if version.status == ModelVersion.Status.PROMOTED:
        return version
    if not version.gguf_path or not Path(version.gguf_path).is_file():
        raise HearthError(f"Version {version.pk} has no GGUF file on disk; it cannot be served.")
    with transaction.atomic():
        for current in ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.PROMOTED):
            current.transition(ModelVersion.Status.RETIRED, reason=f"replaced by version {version.pk}")
        version.transition(ModelVersion.Status.PROMOTED)
        version.promoted_at = timezone.now()
        version.save(update_fields=["promoted_at"])
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
