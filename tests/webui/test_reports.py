"""The admin shows an evaluation report as a comparison, on the report's page and on its version's."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


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
        decision="promoted: exact match 0.083 beats the base model's 0.037",
    )


@pytest.mark.parametrize("page", ["report", "version"])
def test_report_is_a_comparison_table(admin_client, report, page):
    url = (
        f"/admin/trainer/evaluationreport/{report.pk}/change/"
        if page == "report"
        else f"/admin/trainer/modelversion/{report.version.pk}/change/"
    )
    html = admin_client.get(url).content.decode()
    assert "Base against candidate" in html and "promoted: exact match 0.083" in html
    assert "<td>candidate</td>" in html and "0.083" in html and "0.037" in html
    assert "multi-line" not in html and "single line, fill-in-the-middle" in html  # only the modes scored
    assert "10.31" in html and "6.38" in html  # perplexity of both
    assert "app/x.py:7" in html and "return &lt;total&gt;</code>" in html and ">pass</code>" in html
    # The four paired arms, the served one marked, each against the base alone.
    arms = html[html.index("Arms (prefix mode") :]
    for arm in ("<td>base</td>", "<td>base+context</td>", "<td>tuned</td>", "<b>tuned+context</b> (served)"):
        assert arm in arms
    assert "+0.173" in arms and "+0.013" in arms
    assert "single line, prefix only, with repository context" in html


def test_versions_and_reports_cannot_be_edited_or_added_by_hand(admin_client, report):
    html = admin_client.get(f"/admin/trainer/modelversion/{report.version.pk}/change/").content.decode()
    assert 'name="gguf_path"' not in html and 'name="base"' not in html and 'name="fim_format"' not in html
    assert admin_client.get("/admin/trainer/modelversion/add/").status_code == 403
    assert admin_client.get("/admin/trainer/evaluationreport/add/").status_code == 403


def test_empty_report_says_so():
    from webui.reports import report_html

    assert "No scores" in report_html({})
