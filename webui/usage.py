"""Usage as an admin reads it: the 7- and 28-day figures overall, per language and per model, the
filter counts and the daily charts, shared by the dashboard's usage card and the usage page. With
telemetry off, Hearth records nothing: the pages say so rather than draw zeros."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import SafeString

from webui.charts import line_chart
from webui.reports import html_table

PERIODS = (7, 28)


def telemetry_on() -> bool:
    """Whether the serving policy records completions (off until an admin turns it on)."""
    from inference.models import ServingPolicy

    return bool(ServingPolicy.objects.filter(pk=1).values_list("telemetry_enabled", flat=True).first())


def figures_shown(figures: dict | None) -> dict:
    """One period's figures as a page shows them: counts with thousands separators, the acceptance
    rate as a percentage, latencies in whole ms (the unit is in the column's header), and "–" where
    there was nothing to measure."""
    figures = figures or {}

    def ms(key: str) -> str:
        value = figures.get(key)
        return "–" if value is None else f"{value:,.0f}"

    rate, interval, survived = (
        figures.get("acceptance_rate"),
        figures.get("acceptance_interval"),
        figures.get("survived"),
    )
    if rate is None:
        # Nothing reported shown or accepted: these clients send no events (a 0% would be a lie).
        plain = "no events reported" if figures.get("requests") else "–"
        acceptance = plain
    else:
        plain = f"{rate:.0%}"
        acceptance = plain + (f" ({interval[0]:.0%}–{interval[1]:.0%})" if interval else "")
    return {
        "requests": f"{figures.get('requests', 0):,}",
        "viewed": f"{figures.get('viewed', 0):,}",
        "accepted": f"{figures.get('accepted', 0):,}",
        "acceptance_rate": plain,
        "acceptance_interval": acceptance,  # the rate with its 95% interval
        "p50": ms("latency_ms_p50"),
        "p95": ms("latency_ms_p95"),
        "survived": "–" if survived is None else f"{survived:.0%} of {figures.get('snapshots', 0):,}",
    }


MODEL_HEADERS = (
    "model",
    "requests",
    "shown",
    "accepted",
    "acceptance (95% interval)",
    "p50 / p95 ms",
    "accepted text still there later",
)


def model_row(label: str, figures: dict) -> tuple:
    """A model's (or a canary arm's) row: requests, acceptance with its interval, latency, survival."""
    f = figures_shown(figures)
    return (
        label,
        f["requests"],
        f["viewed"],
        f["accepted"],
        f["acceptance_interval"],
        f"{f['p50']} / {f['p95']}",
        f["survived"],
    )


def model_rows(by_model: dict[str, dict]) -> list[tuple]:
    return [model_row(name or "unknown", figures) for name, figures in sorted(by_model.items())]


def _period_cells(figures: dict) -> tuple[str, str, str]:
    return figures["requests"], figures["acceptance_rate"], f"{figures['p50']} / {figures['p95']}"


def usage_overview(now: datetime | None = None) -> dict:
    """The figures of the last 7 and 28 days as tables: overall, per language, per model, and how
    often each response filter acted; plus whether telemetry is on and anything was recorded."""
    from inference.selectors import usage_summary

    now = now or timezone.now()
    summaries = {days: usage_summary(since=now - timedelta(days=days), until=now) for days in PERIODS}
    overall = {days: figures_shown(summaries[days]["overall"]) for days in PERIODS}
    periods = [
        (
            f"last {days} days",
            f["requests"],
            f["viewed"],
            f["accepted"],
            f["acceptance_rate"],
            f["p50"],
            f["p95"],
        )
        for days, f in overall.items()
    ]
    split = tuple(h for days in PERIODS for h in (f"requests, {days} days", "acceptance", "p50 / p95 ms"))

    def breakdown(key: str, kind: str) -> SafeString:
        names = sorted(set().union(*(summaries[d][key] for d in PERIODS)))
        rows = [
            (
                name or "unknown",
                *(c for d in PERIODS for c in _period_cells(figures_shown(summaries[d][key].get(name)))),
            )
            for name in names
        ]
        return html_table((kind, *split), rows)

    filters = sorted(set().union(*(summaries[d]["filters"] for d in PERIODS)))
    return {
        "telemetry_on": telemetry_on(),
        "recorded": summaries[PERIODS[-1]]["overall"]["requests"] > 0,
        "events_reported": summaries[PERIODS[-1]]["overall"]["viewed"] > 0,
        "periods_table": html_table(
            ("", "requests", "shown", "accepted", "acceptance rate", "p50 latency, ms", "p95 latency, ms"),
            periods,
        ),
        "by_language_table": breakdown("by_language", "language"),
        "by_model_table": html_table(MODEL_HEADERS, model_rows(summaries[PERIODS[-1]]["by_model"])),
        "filters_table": html_table(
            ("filter", *(f"acted, {d} days" for d in PERIODS)),
            [(name, *(f"{summaries[d]['filters'].get(name, 0):,}" for d in PERIODS)) for name in filters],
        )
        if filters
        else None,
    }


def _promotion_marks(now: datetime, days: int) -> list[tuple[float, str]]:
    """Each promotion in the window, as (days from today, label), for the usage charts."""
    from trainer.models import ModelVersion

    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [
        ((version.promoted_at - today).total_seconds() / 86400, f"v{version.pk} promoted")
        for version in ModelVersion.objects.filter(promoted_at__gte=now - timedelta(days=days))
    ]


def usage_charts(now: datetime | None = None, days: int = 28) -> dict:
    """Requests, acceptance rate and latency p50/p95 per day, each promotion marked. Requests count
    from 0 in whole steps; the acceptance rate runs from 0% to 100%."""
    from inference.selectors import usage_daily

    now = now or timezone.now()
    daily = usage_daily(days=days, until=now)
    marks = _promotion_marks(now, days)
    x_range = (-(days - 1), 0)

    def series(key: str, label: str) -> tuple[str, list[tuple[float, float]]]:
        return label, [(row["offset"], float(row[key])) for row in daily if row[key] is not None]

    return {
        "requests_chart": line_chart(
            [series("requests", "requests")],
            x_label="days ago (0 = today)",
            y_label="requests",
            marks=marks,
            x_range=x_range,
            integer_y=True,
        ),
        "acceptance_chart": line_chart(
            [series("acceptance_rate", "acceptance rate")],
            x_label="days ago",
            y_label="accepted",
            marks=marks,
            x_range=x_range,
            y_max=1.0,
            y_format="{:.0%}",
        ),
        "latency_chart": line_chart(
            [series("latency_ms_p50", "p50"), series("latency_ms_p95", "p95")],
            x_label="days ago",
            y_label="latency (ms)",
            marks=marks,
            x_range=x_range,
            y_from_zero=True,
            y_format="{:,.0f}",
        ),
    }


def usage_view(request, admin_site):
    """The usage page: the 7- and 28-day figures per language and per model, the filter counts and
    the daily charts (what `manage.py usage_report` prints, in the browser)."""
    from inference.models import CompletionRecord

    now = timezone.now()
    overview = usage_overview(now)
    context = {
        **admin_site.each_context(request),
        "title": "Usage",
        "opts": CompletionRecord._meta,
        **overview,
        **(usage_charts(now) if overview["recorded"] else {}),
    }
    return TemplateResponse(request, "admin/hearth/usage.html", context)
