"""Reports as an admin reads them: `html_table` (the usage page's tables), and an evaluation report
as base against the tuned candidate (and the served model), per scoring mode and per language, rendered
by the templates admin/hearth/_evaluation_report.html and _report_charts.html. The models go by the
README's arm names everywhere (`base`, `base+context`, `tuned`, `tuned+context`), the scoring modes by
their titles."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import SafeString

from trainer.evaluation.services import code_tradeoff, decision_split
from trainer.tools.scores import Scores
from webui.charts import bar_chart

MODES = (
    ("prefix", "single line, prefix only"),
    ("prefix+context", "single line, prefix only, with repository context"),
    ("fim", "single line, fill-in-the-middle"),
    ("fim+context", "single line, fill-in-the-middle, with repository context"),
    ("fim_multiline", "multi-line fill-in-the-middle"),
)
MODE_TITLES = dict(MODES)
ORDER = ("base", "served", "candidate")
# A report's model labels as the arms are named: the candidate is "tuned".
ARM_NAMES = {"candidate": "tuned"}
# Code cells wrap, so that a long line does not push the other models off the page.
CODE = '<code style="white-space:pre-wrap;word-break:break-word">{}</code>'


def _bar(value: float) -> SafeString:
    width = max(0.0, min(1.0, value)) * 160
    return format_html(
        '<span style="display:inline-block;height:10px;width:{}px;background:#417690;'
        'vertical-align:middle;margin-right:6px"></span>{}',
        f"{width:.0f}",
        f"{value:.3f}",
    )


def arm_name(label: str, mode: str = "") -> str:
    """A model of the report in a scoring mode, named as its arm: ("candidate", "fim+context") → "tuned+context"."""
    return ARM_NAMES.get(label, label) + ("+context" if mode.endswith("+context") else "")


def mode_title(mode: str) -> str:
    return MODE_TITLES.get(mode, mode)


def _labels(scores: Scores) -> list[str]:
    return [m for m in ORDER if m in scores.models] + sorted(set(scores.models) - set(ORDER))


def _mode_rows(scores: Scores) -> list[tuple]:
    rows = []
    for mode, title in MODES:
        for label in _labels(scores):
            if not scores.has(label, mode):
                continue
            score = scores.headline(label, mode)
            lo, hi = score.exact_match_ci95
            rows.append(
                (
                    title if mode != scores.mode else format_html("<b>{}</b> (headline)", title),
                    arm_name(label, mode),
                    score.tasks,
                    _bar(score.exact_match),
                    f"{lo:.3f}–{hi:.3f}",
                    f"{score.edit_similarity:.3f}",
                )
            )
    return rows


def _language_rows(scores: Scores) -> list[tuple]:
    labels = [m for m in _labels(scores) if scores.has(m)]
    per_model = {m: scores.headline(m).by_language for m in labels}
    languages = sorted({lang for langs in per_model.values() for lang in langs})
    rows = []
    for lang in languages:
        cells = [lang, next((per_model[m][lang]["tasks"] for m in labels if lang in per_model[m]), 0)]
        cells += [f"{per_model[m][lang]['exact_match']:.3f}" if lang in per_model[m] else "–" for m in labels]
        rows.append(tuple(cells))
    return rows


def _example_rows(scores: Scores) -> tuple[list[str], list[tuple]]:
    """The same sampled tasks for every model (the harness samples by task index), target first."""
    labels = [m for m in _labels(scores) if scores.has(m)]
    examples = {m: scores.headline(m).examples for m in labels}
    first = examples[labels[0]] if labels else []
    rows = []
    for i, ex in enumerate(first):
        preds = [examples[m][i]["prediction"] if i < len(examples[m]) else "" for m in labels]
        rows.append(
            (
                f"{ex['path']}:{ex['line']}",
                format_html(CODE, ex["target"]),
                *(format_html(CODE, p) for p in preds),
            )
        )
    return labels, rows


def report_charts(scores: Scores) -> SafeString:
    """Exact match with its 95% interval per arm under each scoring mode's title, per language, edit
    similarity and perplexity, as bar charts (the tables below give the same numbers)."""
    labels = _labels(scores)
    em, edit = [], []
    for mode, title in MODES:
        scored = [label for label in labels if scores.has(label, mode)]
        if scored:
            heading = f"{title} (headline)" if mode == scores.mode else title
            em.append((heading, None, None))
            edit.append((heading, None, None))
        for label in scored:
            score = scores.headline(label, mode)
            em.append((arm_name(label, mode), score.exact_match, score.exact_match_ci95))
            edit.append((arm_name(label, mode), score.edit_similarity, None))
    per_language = []
    for lang, _tasks, *cells in _language_rows(scores):
        per_language.append((lang, None, None))
        for label, cell in zip([m for m in labels if scores.has(m)], cells, strict=True):
            if cell != "–":
                per_language.append((arm_name(label, scores.mode), float(cell), None))
    perplexity = [
        (arm_name(label), scores.models[label].perplexity, None)
        for label in labels
        if scores.models[label].perplexity is not None
    ]
    return render_to_string(
        "admin/hearth/_report_charts.html",
        {
            "exact_match": bar_chart(em, scale_max=1.0, title="exact match"),
            "mode_title": mode_title(scores.mode),
            "by_language": bar_chart(per_language, scale_max=1.0, title="exact match by language"),
            "edit_similarity": bar_chart(edit, scale_max=1.0, title="edit similarity"),
            "perplexity": bar_chart(perplexity, fmt="{:.2f}", title="perplexity"),
        },
    )


def html_table(headers, rows) -> SafeString:
    """An HTML table of escaped cells (cells may be already-safe HTML, such as a bar)."""
    return render_to_string("admin/hearth/_table.html", {"headers": headers, "rows": rows})


def _arm_rows(scores: Scores, served_arm: str) -> list[tuple]:
    """The paired arms (each model with and without repository context) against the base alone; the
    version's own arm (`served_arm`, the one it serves as once promoted) in bold. Whether it is served
    now is the version's status, not the report's: it is not claimed here."""
    if not scores.has_arm("base"):
        return []
    base = scores.arm("base")
    rows = []
    for arm, score in scores.arms.items():
        lo, hi = score.exact_match_ci95
        rows.append(
            (
                format_html("<b>{}</b> (this version's arm)", arm) if arm == served_arm else arm,
                _bar(score.exact_match),
                f"{lo:.3f}–{hi:.3f}",
                f"{score.exact_match - base.exact_match:+.3f}",
                f"{score.edit_similarity:.3f}",
            )
        )
    return rows


def _general_rows(scores: Scores) -> list[tuple]:
    """The general-code arms ("general:base", "general:tuned"): lines of the standard library, code the
    customer did not write, to show whether fine-tuning forgot general code."""
    general = scores.general
    if general is None or not general.has_arm("base"):
        return []
    base = general.arm("base")
    rows = []
    for name in ("base", "tuned"):
        if not general.has_arm(name):
            continue
        score = general.arm(name)
        lo, hi = score.exact_match_ci95
        rows.append(
            (
                f"general:{name}",
                _bar(score.exact_match),
                f"{lo:.3f}–{hi:.3f}",
                f"{score.exact_match - base.exact_match:+.3f}",
                f"{score.edit_similarity:.3f}",
            )
        )
    return rows


def tradeoff_html(scores: Scores) -> SafeString | str:
    """ "Against the base model: your code: +x points; general code: -y points", or "" without a candidate."""
    text = code_tradeoff(scores)
    return render_to_string("admin/hearth/_tradeoff.html", {"tradeoff": text}) if text else ""


def decision_html(decision: str) -> SafeString:
    """The gate's sentence, with its statistics one click away (a stored decision is both)."""
    sentence, details = decision_split(decision)
    return render_to_string("admin/hearth/_decision.html", {"sentence": sentence, "details": details})


def report_html(metrics: dict, decision: str = "", served_arm: str = "") -> SafeString:
    """The whole comparison; an empty report says so instead of showing an empty table."""
    scores = Scores.from_metrics(metrics)
    if not scores.models:
        return format_html("<p>{}</p>", "No scores in this report.")
    labels = _labels(scores)
    example_labels, examples = _example_rows(scores)
    arms = _arm_rows(scores, served_arm)
    general_rows = _general_rows(scores)
    return render_to_string(
        "admin/hearth/_evaluation_report.html",
        {
            "decision": decision_html(decision) if decision else "",
            "tasks": scores.tasks,
            "mode_title": mode_title(scores.mode),
            # The arms table only when there is more than the base to compare.
            "arms": arms if len(arms) > 1 else [],
            "served_arm_shown": served_arm in scores.arms,
            "tradeoff": tradeoff_html(scores),
            "general_rows": general_rows,
            "general": scores.general,
            "general_tasks": scores.general.arm("base").tasks if general_rows else 0,
            "charts": report_charts(scores),
            "mode_rows": _mode_rows(scores),
            "perplexity": [
                (arm_name(label), f"{scores.models[label].perplexity:.2f}")
                for label in labels
                if scores.models[label].perplexity is not None
            ],
            "language_headers": (
                "language",
                "tasks",
                *[arm_name(m, scores.mode) for m in labels if scores.has(m)],
            ),
            "language_rows": _language_rows(scores),
            "example_headers": ("line", "held-out text", *[arm_name(m, scores.mode) for m in example_labels]),
            "examples": examples,
        },
    )
