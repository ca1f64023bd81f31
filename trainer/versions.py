"""Model version lifecycle: promote, retire, and what is served."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from trainer.models import ModelVersion


def model_version_promote(*, version: ModelVersion) -> ModelVersion:
    """Serve `version`: the previously promoted one is retired in the same transaction."""
    with transaction.atomic():
        for current in ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.PROMOTED):
            if current.pk != version.pk:
                current.transition(ModelVersion.Status.RETIRED, reason=f"replaced by version {version.pk}")
        version.transition(ModelVersion.Status.PROMOTED)
        version.promoted_at = timezone.now()
        version.save(update_fields=["promoted_at"])
    return version
