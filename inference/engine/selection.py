"""Which GGUF the engine should serve: the promoted model version, else the default base."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from trainer.models import BaseModel
from trainer.versions import canary_version, served_version


@dataclass(frozen=True)
class ServedModel:
    id: str  # what /v1/models shows
    gguf_path: str
    fim_format: str
    version_pk: int | None
    base_slug: str


def base_default() -> BaseModel | None:
    ready = BaseModel.objects.filter(status=BaseModel.Status.READY).exclude(gguf_path="")
    preferred = ready.filter(slug=settings.HEARTH_BASE_MODEL).first()
    return preferred or ready.order_by("-created_at").first()


def served_model_select(*, exclude_version: int | None = None) -> ServedModel | None:
    version = served_version(exclude_pk=exclude_version)
    if version is not None:
        return ServedModel(
            f"hearth-v{version.pk}", version.gguf_path, version.fim_format, version.pk, version.base.slug
        )
    base = base_default()
    if base is None:
        return None
    return ServedModel(base.slug, base.gguf_path, base.fim_format if base.can_infill else "", None, base.slug)


@dataclass(frozen=True)
class CanaryModel:
    """The candidate served to `percent` % of developers beside the served model."""

    served: ServedModel
    percent: int


def canary_model_select() -> CanaryModel | None:
    version = canary_version()
    if version is None:
        return None
    served = ServedModel(
        f"hearth-v{version.pk}", version.gguf_path, version.fim_format, version.pk, version.base.slug
    )
    return CanaryModel(served, version.canary_percent)
