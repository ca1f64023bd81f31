"""The admin shows an evaluation report as a comparison, on the report's page and on its version's."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

DECISION = (
    "Promoted: the custom model with repository context (tuned+context) completed 63 of 300 held-out lines exactly, "
    "the base model (served now) 11; 52 lines got better and 0 worse; gain +17 points (95% interval +13 "
    "to +22).\nStatistics: tuned+context against base, prefix mode, 300 held-out lines: McNemar exact p = 4.4e-16."
)


def _score(em: float, tasks: int = 300, prediction: str = "") -> dict:
    return {
        "mode": "prefix",
        "tasks": tasks,
        "exact_match": em,
        "exact_match_ci95": [em - 0.02, em + 0.03],
        "edit_similarity": 0.4,
        "by_language": {"python": {"tasks": tasks, "exact_match": em, "edit_similarity": 0.4}},
        "examples": [{"path": "app/x.py", "line": 7, "target": "return <total>", "prediction": prediction}],
    }


@pytest.fixture
def report():
    from trainer.models import BaseModel, Dataset, EvaluationReport, ModelVersion, TrainingRun

    base = BaseModel.objects.create(slug="b", display_name="b")
    dataset = Dataset.objects.create(status=Dataset.Status.READY)
    run = TrainingRun.objects.create(base=base, dataset=dataset, status=TrainingRun.Status.SUCCEEDED)
    version = ModelVersion.objects.create(
        base=base, run=run, status=ModelVersion.Status.CANDIDATE, served_arm="tuned+context"
    )
    metrics = {
        "mode": "prefix",
        "tasks": 300,
        "models": {
            "base": {
                "line_completion": {
                    "prefix": _score(0.037, prediction="pass"),
                    "prefix+context": _score(0.05, prediction="return total"),
                },
                "perplexity": {"perplexity": 10.31, "tokens": 4096},
            },
            "candidate": {
                "line_completion": {
                    "prefix": _score(0.083, prediction="return <total>"),
                    "prefix+context": _score(0.21, prediction="return <total>"),
                    "fim": _score(0.0, 120),
                },
                "perplexity": {"perplexity": 6.38, "tokens": 4096},
            },
        },
    }
    return EvaluationReport.objects.create(
        dataset=dataset,
        version=version,
        mode="prefix",
        metrics=metrics,
        decision=DECISION,
    )


@pytest.mark.parametrize("page", ["report", "version"])
def test_report_is_a_comparison_table(admin_client, report, page):
    url = (
        f"/admin/trainer/evaluationreport/{report.pk}/change/"
        if page == "report"
        else f"/admin/trainer/modelversion/{report.version.pk}/change/"
    )
    html = admin_client.get(url).content.decode()
    assert "Base against candidate" in html
    # The sentence first; the statistics one click away.
    assert (
        '<p class="hearth-decision">Promoted: the custom model with repository context (tuned+context) completed 63'
        in html
    )
    assert "<summary>Statistics</summary><p>tuned+context against base, prefix mode" in html
    assert "\nStatistics:" not in html
    assert (
        "<td>tuned</td>" in html and "<td>candidate</td>" not in html and "0.083" in html and "0.037" in html
    )
    assert "multi-line" not in html and "single line, fill-in-the-middle" in html  # only the modes scored
    assert "10.31" in html and "6.38" in html  # perplexity of both
    assert "app/x.py:7" in html and "return &lt;total&gt;</code>" in html and ">pass</code>" in html
    # The four paired arms, each against the base alone; the version's own arm marked, not "(served)":
    # this candidate is not served.
    arms = html[html.index("Arms (single line, prefix only, the same 300 held-out lines") :]
    for arm in (
        "<td>base</td>",
        "<td>base+context</td>",
        "<td>tuned</td>",
        "<b>tuned+context</b> (this version",
    ):
        assert arm in arms
    assert "(served)" not in html
    assert "+0.173" in arms and "+0.013" in arms
    assert "single line, prefix only, with repository context" in html


@pytest.mark.parametrize("page", ["report", "version"])
def test_both_pages_show_your_code_against_general_code(admin_client, report, page):
    general = {"mode": "prefix", "tasks": 120, "hits": [1] * 30 + [0] * 90}
    report.metrics["general"] = {
        "source": "the Python 3.11 standard library",
        "files": 24,
        "mode": "prefix",
        "tasks": 120,
        "models": {
            "base": {**_score(0.25, 120), **general},
            "candidate": {**_score(0.225, 120), **general, "hits": [1] * 27 + [0] * 93},
        },
    }
    report.save(update_fields=["metrics"])
    url = (
        f"/admin/trainer/evaluationreport/{report.pk}/change/"
        if page == "report"
        else f"/admin/trainer/modelversion/{report.version.pk}/change/"
    )
    html = admin_client.get(url).content.decode()
    # Against the base: the served arm (tuned+context, 0.21 against 0.037) and the plain arm on general code.
    assert "<b>Against the base model:</b> your code: +17.3 points; general code: -2.5 points." in html
    if page == "report":
        table = html[html.index("General code (120 held-out lines of 24 files of the Python 3.11") :]
        assert "<td>general:base</td>" in table and "<td>general:tuned</td>" in table and "-0.025" in table


def test_a_report_without_general_code_shows_your_code_alone():
    from trainer.tools.scores import Scores
    from webui.reports import tradeoff_html

    metrics = {"mode": "prefix", "models": {"base": {"line_completion": {"prefix": _score(0.1)}}}}
    assert tradeoff_html(Scores.from_metrics(metrics)) == ""
    metrics["models"]["candidate"] = {"line_completion": {"prefix": _score(0.2)}}
    assert "your code: +10 points." in tradeoff_html(Scores.from_metrics(metrics))


def test_versions_and_reports_cannot_be_edited_or_added_by_hand(admin_client, report):
    html = admin_client.get(f"/admin/trainer/modelversion/{report.version.pk}/change/").content.decode()
    assert 'name="gguf_path"' not in html and 'name="base"' not in html and 'name="fim_format"' not in html
    assert admin_client.get("/admin/trainer/modelversion/add/").status_code == 403
    assert admin_client.get("/admin/trainer/evaluationreport/add/").status_code == 403


def test_empty_report_says_so():
    from webui.reports import report_html

    assert "No scores" in report_html({})


def test_charts_name_the_arms_as_the_table_does(report):
    from trainer.tools.scores import Scores
    from webui.reports import report_charts

    charts = str(report_charts(Scores.from_metrics(report.metrics)))
    labels = re.findall(r'text-anchor="end">([^<]+)</text>', charts)
    assert set(labels) == {"base", "base+context", "tuned", "tuned+context"}  # the arms table's names
    assert "candidate" not in charts and " · " not in charts and "fim_multiline" not in charts
    headings = re.findall(r'font-weight="bold" fill="#333">([^<]+)</text>', charts)
    assert "single line, prefix only (headline)" in headings and "python" in headings
    assert "single line, fill-in-the-middle" in headings


def test_no_chart_text_runs_off_its_svg():
    from webui.charts import CHAR_W, bar_chart

    svg = str(
        bar_chart(
            [
                ("single line, fill-in-the-middle, with repository context (headline)", None, None),
                ("tuned+context", 0.083, (0.063, 0.113)),
                ("a-rather-long-language-name", 0.5, (0.41, 0.59)),
            ],
            scale_max=1.0,
        )
    )
    width = float(re.search(r'viewBox="0 0 ([\d.]+)', svg).group(1))
    for x, anchor, text in re.findall(
        r'<text x="([\d.]+)" y="[\d.]+" font-size="11"( text-anchor="end")?[^>]*>([^<]+)<', svg
    ):
        extent = len(text) * CHAR_W
        if anchor:
            assert float(x) - extent >= 0, text
        else:
            assert float(x) + extent <= width, (text, x, width)
    assert "0.083 (0.063–0.113)" in svg
