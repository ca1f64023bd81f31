"""Accepted completions for the next fine-tune: the serving side's half of
trainer/datasets/accepted.py (which holds the rules, and may not import this package).

`accepted_completions` reads the telemetry rows: a completion served with text whose own developer
accepted it (a Tabby `select` event) or sent a code snapshot of it (clients send one only for
accepted code), with its prompt split back into prefix and suffix and the latest snapshot. The
developer is an opaque key (only counted, never shown). `feedback_policy` is the telemetry policy as
the dataset stage needs it. `InferenceConfig.ready` registers both with the trainer.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, Subquery

from inference.models import CodeSnapshot, CompletionEvent, CompletionRecord
from trainer.datasets.accepted import AcceptedProvider, FeedbackPolicy

# How serving stores a prompt: the prefix, then this mark and the suffix when the client sent one
# (inference/api/serving.py). A prompt holding the mark more than once cannot be split: skipped.
SUFFIX_MARK = "<|suffix|>"
ACCEPT_EVENT = "select"  # Tabby's event for a completion the developer took
SERVED_OUTCOMES = ("ok", "filtered")


def user_key(user_id: int | None) -> str:
    """An opaque, stable key for a developer (a keyed hash of the user's id): counts distinct
    developers without naming one."""
    if user_id is None:
        return ""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"accepted-completions:{user_id}".encode(), hashlib.sha256
    )
    return digest.hexdigest()[:16]


def accepted_completions(*, since: datetime) -> list[dict]:
    """Completions served since `since` with text and content stored, accepted or snapshotted by the
    developer they were served to, oldest first, as the dicts `trainer.datasets.accepted` reads."""
    same = {"completion_id": OuterRef("completion_id"), "user": OuterRef("user")}
    selected = CompletionEvent.objects.filter(kind=ACCEPT_EVENT, **same)
    snapshots = CodeSnapshot.objects.filter(**same).order_by("-created_at", "-pk")
    rows = (
        CompletionRecord.objects.filter(created_at__gte=since, outcome__in=SERVED_OUTCOMES)
        .exclude(suggestion="")
        .exclude(prompt="")
        .annotate(
            accepted=Exists(selected),
            snapshot=Subquery(snapshots.values("text")[:1]),
            snapshot_path=Subquery(snapshots.values("filepath")[:1]),
        )
        .filter(Q(accepted=True) | Q(snapshot__isnull=False))
        .order_by("created_at", "pk")
    )
    out = []
    for row in rows.iterator():
        if row.prompt.count(SUFFIX_MARK) > 1:
            continue
        prefix, _, suffix = row.prompt.partition(SUFFIX_MARK)
        out.append(
            {
                "id": row.completion_id,
                "created_at": row.created_at.isoformat(),
                "prefix": prefix,
                "middle": row.suggestion,
                "suffix": suffix,
                "snapshot": row.snapshot or "",
                "filepath": row.filepath or row.snapshot_path or "",
                "language": row.language,
                "outcome": row.outcome,
                "user": user_key(row.user_id),
            }
        )
    return out


def feedback_policy() -> FeedbackPolicy:
    """The telemetry policy in force, read now (not the request path's cached copy)."""
    from inference.policy import policy_get

    policy = policy_get()
    return FeedbackPolicy(
        telemetry=policy.telemetry_enabled,
        content=policy.telemetry_content,
        retention_days=policy.retention_days,
        exclude_globs=tuple(policy.globs),
    )


def feedback_provider() -> AcceptedProvider:
    return AcceptedProvider(policy=feedback_policy, collect=lambda since: accepted_completions(since=since))
