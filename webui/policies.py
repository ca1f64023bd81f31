"""The Policies page's services: read every admin policy into one dict, apply a changed one, add to
the blocked-code corpus. Each change is appended to the audit log as old → new."""

from __future__ import annotations

from django.conf import settings

from appliance.audit import audit_record
from inference.models import BlockedCode

# The ServingPolicy fields the page edits (help texts come from the model).
SERVING_FIELDS = (
    "telemetry_enabled",
    "telemetry_content",
    "flow_logs_enabled",
    "retention_days",
    "exclusion_globs",
    "response_filters",
    "repository_context",
)
DATASET_FIELD = "dataset_exclude_globs"


def _lines(text: str) -> str:
    """A multi-line pattern list with blank lines and stray spaces dropped (what is compared and stored)."""
    return "\n".join(line.strip() for line in (text or "").splitlines() if line.strip())


def policies_current() -> dict[str, object]:
    """Every policy as the page shows it; the dataset exclusion falls back to HEARTH_DATASET_EXCLUDE."""
    from inference.policy import policy_get
    from trainer.models import DatasetPolicy

    policy = policy_get()
    values: dict[str, object] = {name: getattr(policy, name) for name in SERVING_FIELDS}
    values["response_filters"] = sorted(policy.response_filters or [])
    row = DatasetPolicy.objects.filter(pk=1).first()
    stored = row.exclude_globs if row is not None else None
    values[DATASET_FIELD] = (
        _lines(stored) if stored is not None else "\n".join(settings.HEARTH_DATASET_EXCLUDE)
    )
    return values


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(value) or "none"
    if isinstance(value, str):
        return repr(", ".join(value.splitlines()))
    return str(value)


def policies_update(*, values: dict[str, object], actor: str, ip: str | None) -> list[str]:
    """Store the policies in `values` that differ from the current ones; return one "name: old → new"
    per change (also the audit entry's detail). Serving rules apply at once in this process and
    within HEARTH_POLICY_CACHE_S seconds in the others."""
    from inference.policy import policy_get, serving_rules_clear
    from trainer.datasets.services import dataset_exclude_globs_set

    current = policies_current()
    new = {**values, "exclusion_globs": _lines(str(values["exclusion_globs"]))}
    new[DATASET_FIELD] = _lines(str(values[DATASET_FIELD]))
    new["response_filters"] = sorted(values["response_filters"])
    changes = [
        f"{name}: {_shown(current[name])} → {_shown(new[name])}"
        for name in (*SERVING_FIELDS, DATASET_FIELD)
        if _normal(current[name]) != _normal(new[name])
    ]
    if not changes:
        return []
    policy = policy_get()
    for name in SERVING_FIELDS:
        setattr(policy, name, new[name])
    policy.save()
    if _normal(current[DATASET_FIELD]) != _normal(new[DATASET_FIELD]):
        dataset_exclude_globs_set(text=str(new[DATASET_FIELD]))
    serving_rules_clear()
    audit_record(action="policy.change", actor=actor, target="policies", detail="; ".join(changes), ip=ip)
    return changes


def _normal(value: object) -> object:
    return _lines(value) if isinstance(value, str) else value


def blocked_code_upload(*, name: str, text: str, actor: str, ip: str | None) -> BlockedCode:
    """Add one file to the blocked-code corpus (suggestions sharing 150+ whitespace-stripped
    characters with it are discarded from now on)."""
    from inference.policy import serving_rules_clear

    row = BlockedCode.objects.create(name=name[:200], text=text)
    serving_rules_clear()
    audit_record(
        action="blocked_code.add",
        actor=actor,
        target=f"blocked code {row.pk}",
        detail=f"{name!r}, {len(text):,} characters",
        ip=ip,
    )
    return row
