"""Numbers as an admin reads them: counts with thousands separators, durations in the unit that
fits (seconds, minutes, hours, days), never "about 4448250 s"."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def thousands(value) -> str:
    """12345678 → "12,345,678"; anything that is not a number is shown as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else str(value)
    return f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"


@register.filter
def duration(seconds) -> str:
    """A duration in words: "45 s", "3 min 20 s", "12 min", "2 h 05 min", "3.5 days", "51 days"."""
    if seconds is None or isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "–"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 600:
        return f"{s // 60} min {s % 60:02d} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    days = s / 86400
    return f"{days:.1f} days" if days < 10 else f"{round(days):,} days"
