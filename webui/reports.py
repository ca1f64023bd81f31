"""Reports as an admin reads them: `html_table` (also the dataset report's), and an evaluation report
as base against candidate (and the served model), per scoring mode and per language."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

MODES = (("prefix", "single line, prefix only"), ("fim", "single line, fill-in-the-middle"),
         ("fim_multiline", "multi-line fill-in-the-middle"))
ORDER = ("base", "served", "candidate")
# Code cells wrap, so that a long line does not push the other models off the page.
CODE = "<code style=\"white-space:pre-wrap;word-break:break-word\">{}</code>"


def _bar(value: float) -> SafeString:
    width = max(0.0, min(1.0, value)) * 160
    return format_html('<span style="display:inline-block;height:10px;width:{}px;background:#417690;'
                       'vertical-align:middle;margin-right:6px"></span>{}', f"{width:.0f}", f"{value:.3f}")


def _labels(models: dict) -> list[str]:
    return [m for m in ORDER if m in models] + sorted(set(models) - set(ORDER))


def _mode_rows(metrics: dict) -> list[tuple]:
    models = metrics.get("models", {})
    rows = []
    for mode, title in MODES:
        for label in _labels(models):
            score = models[label].get("line_completion", {}).get(mode)
            if not score:
                continue
            lo, hi = score.get("exact_match_ci95", [0, 0])
            rows.append((title if mode != metrics.get("mode") else format_html("<b>{}</b> (headline)", title),
                         label, score.get("tasks", 0), _bar(score.get("exact_match", 0.0)),
                         f"{lo:.3f}–{hi:.3f}", f"{score.get('edit_similarity', 0.0):.3f}"))
    return rows


def _language_rows(metrics: dict) -> list[tuple]:
    models, mode = metrics.get("models", {}), metrics.get("mode", "prefix")
    labels = _labels(models)
    per_model = {m: models[m].get("line_completion", {}).get(mode, {}).get("by_language", {}) for m in labels}
    languages = sorted({lang for langs in per_model.values() for lang in langs})
    rows = []
    for lang in languages:
        cells = [lang, next((per_model[m][lang]["tasks"] for m in labels if lang in per_model[m]), 0)]
        cells += [f"{per_model[m][lang]['exact_match']:.3f}" if lang in per_model[m] else "–" for m in labels]
        rows.append(tuple(cells))
    return rows


def _example_rows(metrics: dict) -> tuple[list[str], list[tuple]]:
    """The same sampled tasks for every model (the harness samples by task index), target first."""
    models, mode = metrics.get("models", {}), metrics.get("mode", "prefix")
    labels = _labels(models)
    examples = {m: models[m].get("line_completion", {}).get(mode, {}).get("examples", []) for m in labels}
    first = examples[labels[0]] if labels else []
    rows = []
    for i, ex in enumerate(first):
        preds = [examples[m][i]["prediction"] if i < len(examples[m]) else "" for m in labels]
        rows.append((f"{ex['path']}:{ex['line']}", format_html(CODE, ex["target"]),
                     *(format_html(CODE, p) for p in preds)))
    return labels, rows


def html_table(headers, rows) -> SafeString:
    """An HTML table of escaped cells (cells may be already-safe HTML, such as a bar)."""
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join("", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),)
                                                 for row in rows))
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def report_html(metrics: dict, decision: str = "") -> SafeString:
    """The whole comparison; an empty report says so instead of showing an empty table."""
    models = metrics.get("models") or {}
    if not models:
        return format_html("<p>{}</p>", "No scores in this report.")
    perplexity = [(label, f"{models[label]['perplexity']['perplexity']:.2f}", models[label]["perplexity"]["tokens"])
                  for label in _labels(models) if models[label].get("perplexity")]
    labels = _labels(models)
    example_labels, examples = _example_rows(metrics)
    return format_html(
        "<p>{}</p>{}<h4 style='margin-top:1em'>Held-out perplexity</h4>{}"
        "<h4 style='margin-top:1em'>Exact match by language ({} mode)</h4>{}"
        "<h4 style='margin-top:1em'>Examples</h4>{}",
        decision or f"{metrics.get('tasks', 0)} held-out line tasks; every model scored in the same mode.",
        html_table(("task", "model", "tasks", "exact match", "95% interval", "edit similarity"), _mode_rows(metrics)),
        html_table(("model", "perplexity", "tokens"), perplexity),
        metrics.get("mode", "prefix"),
        html_table(("language", "tasks", *labels), _language_rows(metrics)),
        html_table(("line", "held-out text", *example_labels), examples),
    )
