"""Server-rendered SVG charts (no JavaScript, no CDN): line charts for losses, bars with intervals."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

COLORS = {
    "base": "#8a8a8a",
    "served": "#c28f2c",
    "candidate": "#417690",
    "loss": "#417690",
    "held-out loss": "#c0392b",
}
PALETTE = ("#417690", "#c0392b", "#c28f2c", "#2e8b57", "#7d3c98")


def color_for(label: str, i: int = 0) -> str:
    return COLORS.get(label, PALETTE[i % len(PALETTE)])


def _n(v: float) -> str:
    """A coordinate as text (format_html escapes its arguments to strings before formatting)."""
    return f"{v:.1f}"


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    return [lo + (hi - lo) * k / n for k in range(n + 1)]


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 220,
    marks: Sequence[tuple[float, str]] = (),
    x_range: tuple[float, float] | None = None,
) -> SafeString:
    """Lines (with dots) on shared axes; `series` is (label, [(x, y), ...]) each; `marks` are
    labelled vertical lines at x (a promotion, say)."""
    points = [p for _, pts in series for p in pts]
    if not points:
        return format_html("<p>{}</p>", "No points yet.")
    left, right, top, bottom = 52, 12, 12, 36
    x0, x1 = x_range or (min(p[0] for p in points), max(p[0] for p in points))
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pad = (y1 - y0) * 0.08
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    digits = 2 if y1 - y0 >= 0.2 else 3
    grid = format_html_join(
        "",
        '<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="#e5e5e5"/>'
        '<text x="{3}" y="{4}" font-size="10" text-anchor="end" fill="#666">{5}</text>',
        (
            (left, width - right, _n(sy(t)), left - 4, _n(sy(t) + 3), f"{t:.{digits}f}")
            for t in _ticks(y0, y1)
        ),
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
    rows: Sequence[tuple[str, float, tuple[float, float] | None]],
    *,
    scale_max: float | None = None,
    fmt: str = "{:.3f}",
    width: int = 520,
    title: str = "",
) -> SafeString:
    """Horizontal bars, one per (label, value, interval or None); a 95% interval draws as a whisker."""
    if not rows:
        return format_html("<p>{}</p>", "Nothing to show.")
    top = scale_max or max([v for _, v, _ in rows] + [hi for _, _, ci in rows if ci for hi in ci[1:]]) or 1.0
    label_w, value_w, row_h = 150, 110, 22
    plot = width - label_w - value_w

    def sx(v: float) -> float:
        return label_w + max(0.0, min(1.0, v / top)) * plot

    parts = []
    for i, (label, value, ci) in enumerate(rows):
        y = i * row_h + 4
        c = color_for(label.split(" · ")[-1], i)
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="14" fill="{}" data-value="{}"/>',
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
        text = fmt.format(value)
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
            text += f" ({fmt.format(lo)}–{fmt.format(hi)})"
        parts.append(
            format_html('<text x="{}" y="{}" font-size="11">{}</text>', width - value_w + 4, y + 11, text)
        )
    height = len(rows) * row_h + 8
    return format_html(
        '<svg class="hearth-chart" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg" style="background:#fff;max-width:100%">'
        '<line x1="{}" x2="{}" y1="0" y2="{}" stroke="#bbb"/>{}</svg>',
        title,
        width,
        height,
        width,
        height,
        label_w,
        label_w,
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
