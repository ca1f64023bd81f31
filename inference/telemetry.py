"""Telemetry, flow logs and usage figures, all governed by the admin's ServingPolicy.

Nothing is stored while telemetry is off except filter counts (how often a filter acted, no
content). Prompts, suggestions and code snapshots are stored only when content is allowed too, and
never for a file the content-exclusion globs match.
Everything expires after `retention_days` (28 by default), purged by a daily django-q2 schedule.
Rows are written off the request path (inference.writer).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import F
from django.utils import timezone

from appliance.fields import path_excluded
from inference.engine.result import EngineChoice, EngineResult
from inference.models import (
    CodeSnapshot,
    CompletionEvent,
    CompletionRecord,
    FilterCount,
    FlowLog,
    ServingPolicy,
)
from inference.writer import deferred
from trainer.tools.languages import language_normalize

logger = logging.getLogger(__name__)


def language_guess(*, language: str | None, filepath: str | None) -> str:
    return language_normalize(language=language, filepath=filepath)


def filter_counts_add(names: list[str]) -> None:
    today = timezone.now().date()

    def write() -> None:
        for name in names:
            row, created = FilterCount.objects.get_or_create(day=today, name=name, defaults={"count": 1})
            if not created:
                FilterCount.objects.filter(pk=row.pk).update(count=F("count") + 1)

    deferred(write)


def completion_record(
    *,
    policy: ServingPolicy,
    completion_id: str,
    user_id: int | None,
    dialect: str,
    result: EngineResult | None,
    language: str,
    latency_ms: float,
    outcome: str,
    filters: list[str],
    prompt: str,
    suggestion: str,
    filepath: str = "",
    arm: str = "served",
) -> None:
    """Store one completion's row; `result` is None when the engine was not asked (an excluded file).
    The prompt, the suggestion and the file's path are kept only while content is allowed."""
    if not policy.telemetry_enabled:
        return
    if result is None:
        result = EngineResult(choices=(EngineChoice(index=0, text="", finish_reason="stop"),))
    choice = result.choices[0]
    deferred(
        lambda: CompletionRecord.objects.create(
            completion_id=completion_id,
            user_id=user_id,
            dialect=dialect,
            model=result.model,
            model_version=result.version,
            language=language,
            filepath=filepath[:1000] if policy.telemetry_content else "",
            arm=arm,
            latency_ms=latency_ms,
            prompt_tokens=choice.prompt_tokens,
            completion_tokens=choice.completion_tokens,
            cached_tokens=choice.cached_tokens,
            outcome=outcome,
            filters=filters,
            prompt=prompt if policy.telemetry_content else "",
            suggestion=suggestion if policy.telemetry_content else "",
        )
    )


def event_record(
    *, policy: ServingPolicy, user_id: int, kind: str, completion_id: str, choice_index: int, payload: dict
) -> bool:
    if not policy.telemetry_enabled:
        return False
    deferred(
        lambda: CompletionEvent.objects.create(
            user_id=user_id,
            kind=kind,
            completion_id=completion_id[:64],
            choice_index=choice_index,
            payload=payload,
        )
    )
    return True


def snapshot_record(
    *,
    policy: ServingPolicy,
    user_id: int,
    completion_id: str,
    filepath: str,
    language: str,
    elapsed_s: int,
    text: str,
) -> bool:
    if not (policy.telemetry_enabled and policy.telemetry_content) or path_excluded(filepath, policy.globs):
        return False
    deferred(
        lambda: CodeSnapshot.objects.create(
            user_id=user_id,
            completion_id=completion_id[:64],
            filepath=filepath[:1000],
            language=language,
            elapsed_s=elapsed_s,
            text=text,
        )
    )
    return True


def flow_log_record(
    *, policy: ServingPolicy, user_id: int | None, path: str, status_code: int, latency_ms: float, steps: list
) -> None:
    if policy.flow_logs_enabled:
        deferred(
            lambda: FlowLog.objects.create(
                user_id=user_id, path=path[:200], status_code=status_code, latency_ms=latency_ms, steps=steps
            )
        )


def telemetry_purge(*, now=None) -> dict[str, int]:
    """Delete telemetry, events, snapshots and flow logs older than the retention window."""
    from inference.policy import policy_get

    cutoff = (now or timezone.now()) - timedelta(days=policy_get().retention_days)
    deleted = {}
    for model in (CompletionRecord, CompletionEvent, CodeSnapshot, FlowLog):
        deleted[model.__name__] = model.objects.filter(created_at__lt=cutoff).delete()[0]
    deleted["FilterCount"] = FilterCount.objects.filter(day__lt=cutoff.date()).delete()[0]
    return deleted
