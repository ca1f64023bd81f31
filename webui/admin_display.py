"""How the admin shows values an admin reads but never types: structured data (a manifest, settings,
metrics) as tables and lists instead of raw JSON, commit SHAs and digests shortened with the full value
on hover, counts with thousands separators, and times short enough for a list at 1366 px."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from django.contrib import admin
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

EMPTY = "–"
# A git commit (40 or 64 hex digits) or a sha256 digest: shortened, the full value in a title.
_DIGEST = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
SHORT = 10
# A dict or list longer than this is folded under a summary line, so a manifest of many files does
# not push the rest of the page a screen down.
FOLD = 12
# A list of this many plain values or fewer, each short, reads best on one line.
INLINE = 8


def digest_short(value: str, length: int = SHORT) -> SafeString | str:
    """`value` shortened to its first `length` characters when it is a commit SHA or a sha256
    digest, with the whole value in a title (hover) and selectable; anything else as it is."""
    if not value or not _DIGEST.match(value):
        return value or EMPTY
    return format_html('<code class="hearth-sha" title="{}">{}</code>', value, value[:length])


def breakable(text: str, after: str = "/") -> SafeString | str:
    """`text` that may wrap after each `after` (a path after its slashes, a DN after its commas), so
    a long value wraps inside its column instead of widening it, and never inside a name."""
    if not text:
        return EMPTY
    parts = text.split(after)
    return format_html_join(mark_safe(f"{escape(after)}<wbr>"), "{}", ((part,) for part in parts))


def count(value: float | None) -> str:
    """A count with thousands separators (12,345)."""
    if value is None:
        return EMPTY
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"


def when(value: datetime | None, *, day: bool = False) -> SafeString | str:
    """A time as 2026-05-04 13:07 (or only the day, 2026-05-04), in the appliance's time zone, the
    full time in a title."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return format_html(
        '<span class="hearth-when" title="{}">{}</span>',
        local.isoformat(timespec="seconds"),
        local.strftime("%Y-%m-%d" if day else "%Y-%m-%d %H:%M"),
    )


def when_column(field: str, description: str, *, day: bool = False) -> Callable:
    """A list column showing model field `field` with `when`, sortable by that field."""

    @admin.display(description=description, ordering=field)
    def column(self, obj):
        return when(getattr(obj, field), day=day)

    column.__name__ = f"{field}_short"
    return column


def count_column(field: str, description: str) -> Callable:
    """A list column showing model field `field` with `count`, sortable by that field."""

    @admin.display(description=description, ordering=field)
    def column(self, obj):
        return count(getattr(obj, field))

    column.__name__ = f"{field}_count"
    return column


def _scalar(value) -> SafeString | str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return count(value)
    text = str(value)
    if _DIGEST.match(text):
        return digest_short(text)
    if "\n" in text:
        return format_html('<pre class="hearth-pre">{}</pre>', text)
    return text


def _is_scalar(value) -> bool:
    return not isinstance(value, dict | list | tuple)


def _fold(html: SafeString, size: int, noun: str) -> SafeString:
    if size <= FOLD:
        return html
    return format_html('<details class="hearth-fold"><summary>{} {}</summary>{}</details>', size, noun, html)


def _dotted(value: dict, prefix: str = "") -> list[tuple[str, object]]:
    """A nested dict as (dotted key, value) pairs: {"a": {"b": 1}} → [("a.b", 1)]."""
    pairs: list[tuple[str, object]] = []
    for key, item in value.items():
        if isinstance(item, dict) and item:
            pairs += _dotted(item, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", item))
    return pairs


def _rows_table(items: list[dict], depth: int) -> SafeString:
    """A list of dicts as one table, a column per key (in order of first appearance)."""
    keys: list[str] = []
    for item in items:
        keys += [k for k in item if k not in keys]
    head = format_html_join("", "<th>{}</th>", ((k,) for k in keys))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (format_html_join("", "<td>{}</td>", ((structured_html(item.get(k), depth + 1),) for k in keys)),)
            for item in items
        ),
    )
    return format_html(
        '<table class="hearth-kv hearth-rows"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body
    )


def structured_html(value, depth: int = 0) -> SafeString | str:
    """`value` (what a JSON field holds) for reading: a dict as a two-column table, a dict inside it
    as a nested table whose own nested dicts read as dotted keys (so a deep report never shrinks to a
    sliver), a list of records as a table, other lists as a list (a few short values on one line),
    digests shortened, long text wrapped. Large dicts and lists are folded."""
    if isinstance(value, dict):
        if not value:
            return EMPTY
        pairs = list(value.items()) if depth == 0 else _dotted(value)
        rows = format_html_join(
            "",
            '<tr><th scope="row">{}</th><td>{}</td></tr>',
            ((key, structured_html(item, depth + 1)) for key, item in pairs),
        )
        return _fold(
            format_html('<table class="hearth-kv"><tbody>{}</tbody></table>', rows), len(pairs), "entries"
        )
    if isinstance(value, list | tuple):
        if not value:
            return EMPTY
        if all(isinstance(item, dict) for item in value):
            return _fold(_rows_table(list(value), depth), len(value), "rows")
        if len(value) <= INLINE and all(_is_scalar(i) and len(str(i)) <= 24 for i in value):
            return format_html_join(", ", "{}", ((_scalar(item),) for item in value))
        items = format_html_join("", "<li>{}</li>", ((structured_html(item, depth + 1),) for item in value))
        return _fold(format_html('<ul class="hearth-list">{}</ul>', items), len(value), "items")
    return _scalar(value)


def structured_field(field: str, description: str) -> Callable:
    """A read-only admin field showing JSON model field `field` with `structured_html`."""

    @admin.display(description=description)
    def shown(self, obj):
        return structured_html(getattr(obj, field)) if obj is not None else EMPTY

    shown.__name__ = f"{field}_view"
    return shown
