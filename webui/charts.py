"""Server-rendered SVG charts (no JavaScript, no CDN): line charts for losses, bars with intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# One colour per evaluation arm (as the README and the arms table name them), a darker shade with
# repository context; the training charts' series.
COLORS = {
    "base": "#8a8a8a",
    "base+context": "#5c5c5c",
    "tuned": "#417690",
    "tuned+context": "#264b5d",
    "served": "#c28f2c",
    "served+context": "#8a6218",
    "loss": "#417690",
    "held-out loss": "#c0392b",
}
CHAR_W = 6.6  # about the width of a character at font-size 11, to size a chart's text columns
PALETTE = ("#417690", "#c0392b", "#c28f2c", "#2e8b57", "#7d3c98")


def color_for(label: str, i: int = 0) -> str:
    return COLORS.get(label, PALETTE[i % len(PALETTE)])


def _n(v: float) -> str:
    """A coordinate as text (format_html escapes its arguments to strings before formatting)."""
    return f"{v:.1f}"


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    return [lo + (hi - lo) * k / n for k in range(n + 1)]


def _round_ticks(hi: float, *, integer: bool) -> list[float]:
    """Ticks from 0 to at least `hi` at a round step (1, 2, 2.5 or 5 times a power of ten, about four
    steps); whole steps only when `integer` (a count has no 0.25 of a request)."""
    hi = hi if hi > 0 else 1.0
    raw = hi / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw)
    if integer:
        step = max(1, round(step))
    return [k * step for k in range(math.ceil(hi / step - 1e-9) + 1)]


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 220,
    marks: Sequence[tuple[float, str]] = (),
    x_range: tuple[float, float] | None = None,
    y_from_zero: bool = False,
    integer_y: bool = False,
    y_max: float | None = None,
    y_format: str | None = None,
) -> SafeString:
    """Lines (with dots) on shared axes; `series` is (label, [(x, y), ...]) each; `marks` are
    labelled vertical lines at x (a promotion, say). `y_from_zero` starts the y axis at 0 with round
    ticks (whole ones with `integer_y`, for counts), up to `y_max` when given (1 for a rate);
    `y_format` formats a tick ("{:.0%}")."""
    points = [p for _, pts in series for p in pts]
    if not points:
        return format_html("<p>{}</p>", "No points yet.")
    left, right, top, bottom = 52, 12, 12, 36
    x0, x1 = x_range or (min(p[0] for p in points), max(p[0] for p in points))
    x1 = x1 if x1 > x0 else x0 + 1
    if y_from_zero or integer_y or y_max is not None:
        yticks = _round_ticks(y_max or max(p[1] for p in points), integer=integer_y)
        y0, y1 = 0.0, yticks[-1]
    else:
        y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
        y1 = y1 if y1 > y0 else y0 + 1
        pad = (y1 - y0) * 0.08
        y0, y1 = y0 - pad, y1 + pad
        yticks = _ticks(y0, y1)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    digits = 2 if y1 - y0 >= 0.2 else 3
    tick_format = y_format or ("{:,.0f}" if integer_y else f"{{:.{digits}f}}")
    grid = format_html_join(
        "",
        '<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="#e5e5e5"/>'
        '<text x="{3}" y="{4}" font-size="10" text-anchor="end" fill="#666">{5}</text>',
        ((left, width - right, _n(sy(t)), left - 4, _n(sy(t) + 3), tick_format.format(t)) for t in yticks),
    )
    xticks = format_html_join(
        "",
        '<text x="{0}" y="{1}" font-size="10" text-anchor="middle" fill="#666">{2}</text>',
        ((_n(sx(t)), height - bottom + 14, f"{t:.0f}") for t in sorted({round(t) for t in _ticks(x0, x1)})),
    )
    lines, legend = [], []
    for i, (label, pts) in enumerate(series):
        c = color_for(label, i)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        dots = format_html_join(
            "", '<circle cx="{}" cy="{}" r="2.5" fill="{}"/>', ((_n(sx(x)), _n(sy(y)), c) for x, y in pts)
        )
        lines.append(
            format_html(
                '<polyline points="{}" fill="none" stroke="{}" stroke-width="2" data-series="{}"/>{}',
                path,
                c,
                label,
                dots,
            )
        )
        legend.append(format_html('<tspan fill="{}">■ {}</tspan> ', c, label))
    for x, label in marks:
        if x0 <= x <= x1:
            lines.append(
                format_html(
                    '<line class="hearth-mark" x1="{0}" x2="{0}" y1="{1}" y2="{2}" stroke="#b26b00" '
                    'stroke-dasharray="4 3"/><text x="{3}" y="{4}" font-size="10" fill="#b26b00">{5}</text>',
                    _n(sx(x)),
                    top,
                    height - bottom,
                    _n(sx(x) + 3),
                    top + 10,
                    label,
                )
            )
    return format_html(
        '<svg class="hearth-chart" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg" style="background:#fff;max-width:100%">{}{}{}'
        '<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#333">{}</text>'
        '<text x="12" y="{}" font-size="11" fill="#333" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>'
        '<text x="{}" y="11" font-size="11" text-anchor="end">{}</text></svg>',
        y_label,
        width,
        height,
        width,
        height,
        grid,
        xticks,
        mark_safe("".join(lines)),
        _n((left + width - right) / 2),
        height - 4,
        x_label,
        _n(height / 2),
        _n(height / 2),
        y_label,
        width - right,
        mark_safe("".join(legend)),
    )


def bar_chart(
    rows: Sequence[tuple[str, float | None, tuple[float, float] | None]],
    *,
    scale_max: float | None = None,
    fmt: str = "{:.3f}",
    width: int = 520,
    title: str = "",
) -> SafeString:
    """Horizontal bars, one per (label, value, interval or None); a 95% interval draws as a whisker,
    and a row whose value is None heads the bars below it. The label and value columns are as wide
    as their longest text, so no label and no interval is cut off."""
    bars = [(label, value, ci) for label, value, ci in rows if value is not None]
    if not bars:
        return format_html("<p>{}</p>", "Nothing to show.")
    top = scale_max or max([v for _, v, _ in bars] + [hi for _, _, ci in bars if ci for hi in ci[1:]]) or 1.0

    def value_text(value: float, ci: tuple[float, float] | None) -> str:
        return fmt.format(value) + (f" ({fmt.format(ci[0])}–{fmt.format(ci[1])})" if ci else "")

    label_w = round(max(len(label) for label, _, _ in bars) * CHAR_W) + 12
    value_w = round(max(len(value_text(v, ci)) for _, v, ci in bars) * CHAR_W) + 10
    plot = max(160, width - label_w - value_w)
    width = label_w + plot + value_w
    headings = [label for label, value, _ in rows if value is None]
    width = max([width] + [round(len(h) * CHAR_W * 1.1) + 8 for h in headings])  # bold is wider
    row_h = 22

    def sx(v: float) -> float:
        return label_w + max(0.0, min(1.0, v / top)) * plot

    parts = []
    for i, (label, value, ci) in enumerate(rows):
        y = i * row_h + 4
        if value is None:
            parts.append(
                format_html(
                    '<text x="4" y="{}" font-size="11" font-weight="bold" fill="#333">{}</text>',
                    y + 13,
                    label,
                )
            )
            continue
        c = color_for(label, i)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#bbb"/>'
                '<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="14" fill="{}" data-value="{}"/>',
                label_w,
                label_w,
                y - 4,
                y + 18,
                label_w - 6,
                y + 11,
                label,
                label_w,
                y,
                _n(sx(value) - label_w),
                c,
                fmt.format(value),
            )
        )
        if ci:
            lo, hi = ci
            parts.append(
                format_html(
                    '<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="#222"/>'
                    '<line x1="{0}" x2="{0}" y1="{3}" y2="{4}" stroke="#222"/>'
                    '<line x1="{1}" x2="{1}" y1="{3}" y2="{4}" stroke="#222"/>',
                    _n(sx(lo)),
                    _n(sx(hi)),
                    y + 7,
                    y + 2,
                    y + 12,
                )
            )
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="11">{}</text>',
                label_w + plot + 6,
                y + 11,
                value_text(value, ci),
            )
        )
    height = len(rows) * row_h + 8
    return format_html(
        '<svg class="hearth-chart" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg" style="background:#fff;max-width:100%">{}</svg>',
        title,
        width,
        height,
        width,
        height,
        mark_safe("".join(parts)),
    )


def progress_bar(fraction: float, label: str) -> SafeString:
    pct = max(0.0, min(1.0, fraction)) * 100
    return format_html(
        '<div class="hearth-progress" role="progressbar" aria-valuenow="{0}" aria-valuemin="0" '
        'aria-valuemax="100" style="background:#e5e5e5;border-radius:4px;height:18px;width:100%;max-width:640px">'
        '<div style="background:#417690;height:18px;border-radius:4px;width:{1}%"></div></div>'
        '<div style="margin-top:4px">{2}</div>',
        f"{pct:.0f}",
        f"{pct:.1f}",
        label,
    )
