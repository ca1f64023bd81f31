"""Server-rendered SVG charts (no JavaScript, no CDN): line charts for losses, bars with intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Plot:
    """A line chart's frame: the data ranges (x0..x1, y0..y1) and the pixel box they are drawn in,
    inside margins for the tick labels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int
    height: int
    left: int = 52
    right: int = 12
    top: int = 12
    bottom: int = 36

    def sx(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (self.width - self.left - self.right)

    def sy(self, y: float) -> float:
        return self.top + (self.y1 - y) / (self.y1 - self.y0) * (self.height - self.top - self.bottom)


def _svg(title: str, width: int, height: int, body: SafeString) -> SafeString:
    """The chart's SVG element around its drawn `body`, labelled `title` for a screen reader."""
    return format_html(
        '<svg class="hearth-chart" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg" style="background:#fff;max-width:100%">{}</svg>',
        title,
        width,
        height,
        width,
        height,
        body,
    )


def _y_range(
    points: list[tuple[float, float]], *, y_from_zero: bool, integer_y: bool, y_max: float | None
) -> tuple[float, float, list[float]]:
    """(y0, y1, ticks): from 0 at round ticks when asked, else the points' range with a margin."""
    if y_from_zero or integer_y or y_max is not None:
        yticks = _round_ticks(y_max or max(p[1] for p in points), integer=integer_y)
        return 0.0, yticks[-1], yticks
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    y1 = y1 if y1 > y0 else y0 + 1
    pad = (y1 - y0) * 0.08
    y0, y1 = y0 - pad, y1 + pad
    return y0, y1, _ticks(y0, y1)


def _line_axes(plot: _Plot, yticks: list[float], tick_format: str) -> SafeString:
    """The horizontal grid lines with their y ticks, then the x ticks (whole numbers)."""
    grid = format_html_join(
        "",
        '<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="#e5e5e5"/>'
        '<text x="{3}" y="{4}" font-size="10" text-anchor="end" fill="#666">{5}</text>',
        (
            (
                plot.left,
                plot.width - plot.right,
                _n(plot.sy(t)),
                plot.left - 4,
                _n(plot.sy(t) + 3),
                tick_format.format(t),
            )
            for t in yticks
        ),
    )
    xticks = format_html_join(
        "",
        '<text x="{0}" y="{1}" font-size="10" text-anchor="middle" fill="#666">{2}</text>',
        (
            (_n(plot.sx(t)), plot.height - plot.bottom + 14, f"{t:.0f}")
            for t in sorted({round(t) for t in _ticks(plot.x0, plot.x1)})
        ),
    )
    return format_html("{}{}", grid, xticks)


def _line_series(
    plot: _Plot, series: Sequence[tuple[str, Sequence[tuple[float, float]]]]
) -> tuple[list[SafeString], list[SafeString]]:
    """Each series as a polyline with dots, and its legend entry in the same colour."""
    lines, legend = [], []
    for i, (label, pts) in enumerate(series):
        c = color_for(label, i)
        path = " ".join(f"{plot.sx(x):.1f},{plot.sy(y):.1f}" for x, y in pts)
        dots = format_html_join(
            "",
            '<circle cx="{}" cy="{}" r="2.5" fill="{}"/>',
            ((_n(plot.sx(x)), _n(plot.sy(y)), c) for x, y in pts),
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
    return lines, legend


def _line_marks(plot: _Plot, marks: Sequence[tuple[float, str]]) -> list[SafeString]:
    """A dashed vertical line with its label at each mark inside the x range."""
    return [
        format_html(
            '<line class="hearth-mark" x1="{0}" x2="{0}" y1="{1}" y2="{2}" stroke="#b26b00" '
            'stroke-dasharray="4 3"/><text x="{3}" y="{4}" font-size="10" fill="#b26b00">{5}</text>',
            _n(plot.sx(x)),
            plot.top,
            plot.height - plot.bottom,
            _n(plot.sx(x) + 3),
            plot.top + 10,
            label,
        )
        for x, label in marks
        if plot.x0 <= x <= plot.x1
    ]


def _line_labels(plot: _Plot, x_label: str, y_label: str, legend: list[SafeString]) -> SafeString:
    """The axis titles (x below, y turned along the axis) and the legend at the top right."""
    return format_html(
        '<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#333">{}</text>'
        '<text x="12" y="{}" font-size="11" fill="#333" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>'
        '<text x="{}" y="11" font-size="11" text-anchor="end">{}</text>',
        _n((plot.left + plot.width - plot.right) / 2),
        plot.height - 4,
        x_label,
        _n(plot.height / 2),
        _n(plot.height / 2),
        y_label,
        plot.width - plot.right,
        mark_safe("".join(legend)),
    )


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
    x0, x1 = x_range or (min(p[0] for p in points), max(p[0] for p in points))
    y0, y1, yticks = _y_range(points, y_from_zero=y_from_zero, integer_y=integer_y, y_max=y_max)
    plot = _Plot(x0=x0, x1=x1 if x1 > x0 else x0 + 1, y0=y0, y1=y1, width=width, height=height)
    digits = 2 if y1 - y0 >= 0.2 else 3
    tick_format = y_format or ("{:,.0f}" if integer_y else f"{{:.{digits}f}}")
    lines, legend = _line_series(plot, series)
    lines += _line_marks(plot, marks)
    body = format_html(
        "{}{}{}",
        _line_axes(plot, yticks, tick_format),
        mark_safe("".join(lines)),
        _line_labels(plot, x_label, y_label, legend),
    )
    return _svg(y_label, width, height, body)


@dataclass(frozen=True)
class _Bars:
    """A bar chart's columns: labels (right-aligned), the bars' plot, the values; `top` is the value
    a full-length bar stands for."""

    label_w: int
    plot: int
    width: int
    top: float
    fmt: str
    row_h: int = 22

    def sx(self, v: float) -> float:
        return self.label_w + max(0.0, min(1.0, v / self.top)) * self.plot

    def value_text(self, value: float, ci: tuple[float, float] | None) -> str:
        return _value_text(self.fmt, value, ci)


def _value_text(fmt: str, value: float, ci: tuple[float, float] | None) -> str:
    """A bar's value as shown beside it, with its interval when it has one."""
    return fmt.format(value) + (f" ({fmt.format(ci[0])}–{fmt.format(ci[1])})" if ci else "")


def _bars_layout(rows, *, scale_max: float | None, fmt: str, width: int) -> _Bars:
    """The columns as wide as their longest text, so that no label and no interval is cut off; the
    chart widened for a bold heading longer than the bars."""
    bars = [(label, value, ci) for label, value, ci in rows if value is not None]
    top = scale_max or max([v for _, v, _ in bars] + [hi for _, _, ci in bars if ci for hi in ci[1:]]) or 1.0
    label_w = round(max(len(label) for label, _, _ in bars) * CHAR_W) + 12
    value_w = round(max(len(_value_text(fmt, v, ci)) for _, v, ci in bars) * CHAR_W) + 10
    plot = max(160, width - label_w - value_w)
    headings = [label for label, value, _ in rows if value is None]
    width = max(
        [label_w + plot + value_w] + [round(len(h) * CHAR_W * 1.1) + 8 for h in headings]
    )  # bold is wider
    return _Bars(label_w=label_w, plot=plot, width=width, top=top, fmt=fmt)


def _bar_row(layout: _Bars, i: int, label: str, value: float, ci: tuple[float, float] | None) -> SafeString:
    """Row `i`: its label, its bar, its interval's whisker if any, its value (and interval) as text."""
    y = i * layout.row_h + 4
    label_w = layout.label_w
    bar = format_html(
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
        _n(layout.sx(value) - label_w),
        color_for(label, i),
        layout.fmt.format(value),
    )
    whisker = (
        format_html(
            '<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="#222"/>'
            '<line x1="{0}" x2="{0}" y1="{3}" y2="{4}" stroke="#222"/>'
            '<line x1="{1}" x2="{1}" y1="{3}" y2="{4}" stroke="#222"/>',
            _n(layout.sx(ci[0])),
            _n(layout.sx(ci[1])),
            y + 7,
            y + 2,
            y + 12,
        )
        if ci
        else ""
    )
    text = format_html(
        '<text x="{}" y="{}" font-size="11">{}</text>',
        label_w + layout.plot + 6,
        y + 11,
        layout.value_text(value, ci),
    )
    return format_html("{}{}{}", bar, whisker, text)


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
    if all(value is None for _, value, _ in rows):
        return format_html("<p>{}</p>", "Nothing to show.")
    layout = _bars_layout(rows, scale_max=scale_max, fmt=fmt, width=width)
    parts = [
        format_html(
            '<text x="4" y="{}" font-size="11" font-weight="bold" fill="#333">{}</text>',
            i * layout.row_h + 4 + 13,
            label,
        )
        if value is None
        else _bar_row(layout, i, label, value, ci)
        for i, (label, value, ci) in enumerate(rows)
    ]
    return _svg(title, layout.width, len(rows) * layout.row_h + 8, mark_safe("".join(parts)))


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
