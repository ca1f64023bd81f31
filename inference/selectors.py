"""Usage figures for the admin: requests, acceptance rate and latency, by language and model."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from inference.canary import wilson_interval
from inference.models import CodeSnapshot, CompletionEvent, CompletionRecord, FilterCount


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[k], 1)


def _figures(
    rows: list[tuple[str, float]],
    viewed: set[str],
    accepted: set[str],
    survival: dict[str, float] | None = None,
) -> dict:
    """Requests, acceptance (of the completions a client reported as shown) with its 95% interval,
    latency percentiles and, where snapshots arrived, the mean share of accepted text still there."""
    ids = {cid for cid, _ in rows}
    latencies = sorted(lat for _, lat in rows)
    shown = ids & viewed
    taken = ids & accepted
    interval = wilson_interval(len(taken), len(shown))
    kept = [survival[c] for c in taken if c in survival] if survival else []
    return {
        "requests": len(rows),
        "viewed": len(shown),
        "accepted": len(taken),
        "acceptance_rate": round(len(taken) / len(shown), 4) if shown else None,
        "acceptance_interval": [round(x, 4) for x in interval] if interval else None,
        "survived": round(sum(kept) / len(kept), 4) if kept else None,
        "snapshots": len(kept),
        "latency_ms_p50": _percentile(latencies, 0.50),
        "latency_ms_p90": _percentile(latencies, 0.90),
        "latency_ms_p95": _percentile(latencies, 0.95),
        "latency_ms_p99": _percentile(latencies, 0.99),
    }


def survived_share(suggestion: str, snapshot: str) -> float:
    """How much of an accepted suggestion is still in the code later: the share of its non-blank lines
    found (stripped) in the snapshot."""
    lines = [line.strip() for line in suggestion.splitlines() if line.strip()]
    if not lines:
        return 0.0
    later = {line.strip() for line in snapshot.splitlines()}
    return sum(line in later for line in lines) / len(lines)


def acceptance_sets(since: datetime) -> tuple[set[str], set[str], dict[str, float]]:
    """(shown, accepted, survival) completion ids since `since`. Accepted: a Tabby select event or a
    snapshot (clients post one only for accepted code); shown: a view event, or accepted."""
    events = CompletionEvent.objects.filter(created_at__gte=since)
    accepted = set(events.filter(kind="select").values_list("completion_id", flat=True))
    snaps = {}
    for cid, text in (
        CodeSnapshot.objects.filter(created_at__gte=since)
        .order_by("created_at")
        .values_list("completion_id", "text")
    ):
        snaps[cid] = text  # the latest snapshot of each completion
    accepted |= set(snaps)
    viewed = set(events.filter(kind="view").values_list("completion_id", flat=True)) | accepted
    survival = {}
    if snaps:
        suggestions = CompletionRecord.objects.filter(completion_id__in=list(snaps)).values_list(
            "completion_id", "suggestion"
        )
        survival = {cid: survived_share(text, snaps[cid]) for cid, text in suggestions if text}
    return viewed, accepted, survival


def arm_figures(*, since: datetime) -> dict[str, dict]:
    """The canary's figures and the served model's, over the same period (the canary's run so far)."""
    viewed, accepted, survival = acceptance_sets(since)
    rows = CompletionRecord.objects.filter(created_at__gte=since).values_list(
        "completion_id", "latency_ms", "arm"
    )
    arms: dict[str, list] = {"canary": [], "served": []}
    for cid, latency, arm in rows:
        arms["canary" if arm == "canary" else "served"].append((cid, latency))
    return {arm: _figures(r, viewed, accepted, survival) for arm, r in arms.items()}


def usage_summary(*, since: datetime | None = None, until: datetime | None = None) -> dict:
    """Figures over [since, until) (default: the last 7 days), overall and per language and model."""
    until = until or timezone.now()
    since = since or until - timedelta(days=7)
    records = list(
        CompletionRecord.objects.filter(created_at__gte=since, created_at__lt=until).values_list(
            "completion_id", "latency_ms", "language", "model"
        )
    )
    viewed, accepted, survival = acceptance_sets(since)
    by_language: dict[str, list] = defaultdict(list)
    by_model: dict[str, list] = defaultdict(list)
    for cid, latency, language, model in records:
        by_language[language].append((cid, latency))
        by_model[model].append((cid, latency))
    filters = dict(
        FilterCount.objects.filter(day__gte=since.date(), day__lte=until.date())
        .values_list("name")
        .annotate(total=Sum("count"))
        .values_list("name", "total")
    )
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "overall": _figures([(c, lat) for c, lat, _, _ in records], viewed, accepted, survival),
        "by_language": {k: _figures(v, viewed, accepted, survival) for k, v in sorted(by_language.items())},
        "by_model": {k: _figures(v, viewed, accepted, survival) for k, v in sorted(by_model.items())},
        "filters": filters,
    }


def usage_daily(*, days: int = 28, until: datetime | None = None) -> list[dict]:
    """One row per day (oldest first, the last one today so far): requests, acceptance rate and
    latency p50/p95, for the dashboard's charts."""
    until = until or timezone.now()
    start = (until - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    records = CompletionRecord.objects.filter(created_at__gte=start, created_at__lt=until).values_list(
        "completion_id", "latency_ms", "created_at"
    )
    viewed, accepted, _ = acceptance_sets(start)
    per_day: dict[int, list] = defaultdict(list)
    for cid, latency, created in records:
        per_day[(created - start).days].append((cid, latency))
    rows = []
    for offset in range(days):
        figures = _figures(per_day.get(offset, []), viewed, accepted)
        rows.append(
            {"day": (start + timedelta(days=offset)).date(), "offset": offset - (days - 1), **figures}
        )
    return rows
