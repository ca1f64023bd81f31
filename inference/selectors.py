"""Usage figures for the admin: requests, acceptance rate and latency, by language and model."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from inference.models import CompletionEvent, CompletionRecord, FilterCount


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[k], 1)


def _figures(rows: list[tuple[str, float]], viewed: set[str], accepted: set[str]) -> dict:
    ids = {cid for cid, _ in rows}
    latencies = sorted(lat for _, lat in rows)
    shown = ids & viewed
    return {
        "requests": len(rows),
        "viewed": len(shown),
        "accepted": len(ids & accepted),
        "acceptance_rate": round(len(ids & accepted) / len(shown), 4) if shown else None,
        "latency_ms_p50": _percentile(latencies, 0.50),
        "latency_ms_p90": _percentile(latencies, 0.90),
        "latency_ms_p95": _percentile(latencies, 0.95),
        "latency_ms_p99": _percentile(latencies, 0.99),
    }


def usage_summary(*, since: datetime | None = None, until: datetime | None = None) -> dict:
    """Figures over [since, until) (default: the last 7 days), overall and per language and model."""
    until = until or timezone.now()
    since = since or until - timedelta(days=7)
    records = list(
        CompletionRecord.objects.filter(created_at__gte=since, created_at__lt=until).values_list(
            "completion_id", "latency_ms", "language", "model"
        )
    )
    events = CompletionEvent.objects.filter(created_at__gte=since)
    viewed = set(events.filter(kind="view").values_list("completion_id", flat=True))
    accepted = set(events.filter(kind="select").values_list("completion_id", flat=True))
    viewed |= accepted  # a selected completion was necessarily shown
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
        "overall": _figures([(c, lat) for c, lat, _, _ in records], viewed, accepted),
        "by_language": {k: _figures(v, viewed, accepted) for k, v in sorted(by_language.items())},
        "by_model": {k: _figures(v, viewed, accepted) for k, v in sorted(by_model.items())},
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
    events = CompletionEvent.objects.filter(created_at__gte=start)
    accepted = set(events.filter(kind="select").values_list("completion_id", flat=True))
    viewed = set(events.filter(kind="view").values_list("completion_id", flat=True)) | accepted
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
