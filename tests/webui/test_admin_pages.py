"""The report blocks an admin reads on a dataset's, a model version's and an evaluation report's page
carry their figures: a template that names a value wrongly renders it as nothing, without an error,
so each key figure is looked for on the page."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

COMMIT = "4f2a9c81be03d57e6a1f0c29b8d4e7a6c3b5f901"

# A dataset report as trainer.datasets writes it, each figure distinct so that a misplaced one shows.
REPORT = {
    "seen_files": 1301,
    "seen_bytes": 9_876_543,
    "kept_files": 1207,
    "kept_bytes": 8_765_432,
    "train_files": 1103,
    "train_bytes": 7_654_321,
    "heldout_files": 2,
    "heldout_bytes": 54_321,
    "skipped": {"excluded": 61, "too-large": 33},
    "skipped_bytes": {"excluded": 4_321, "too-large": 2_345_678},
    "by_language": {
        "python": {"files": 1001, "bytes": 6_543_210, "tokens": 1_234_567},
        "go": {"files": 206, "bytes": 765_432, "tokens": 210_987},
    },
    "commits": {"payments": COMMIT},
    "by_repo": {
        "payments": {"seen_files": 1301, "kept_files": 1207, "kept_bytes": 8_765_432, "tokens": 1_445_554}
    },
    "duplicates": {
        "exact": 17,
        "near": 23,
        "near_threshold": 0.85,
        "near_mode": "token shingles",
        "checked_files": 1247,
        "ratio": 0.0321,
    },
    "secrets": {
        "total": 5,
        "files": 3,
        "by_kind": {"password-assignment": 4, "Email Address": 1},
        "hits": [{"repo": "payments", "path": "src/conf.py", "line": 12, "kind": "password-assignment"}],
    },
    "tokens": {"train": 1_398_765, "heldout": 46_789, "total": 1_445_554, "method": "bytes / 3.6 estimate"},
    "heldout": [
        {"repo": "payments", "path": "app/held_one.py"},
        {"repo": "payments", "path": "app/held_two.go"},
    ],
}


def _text(html: str) -> str:
    """The page as an admin reads it: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def dataset():
    from trainer.models import Dataset

    return Dataset.objects.create(status=Dataset.Status.READY, commits={"payments": COMMIT}, report=REPORT)


def test_dataset_report_shows_its_figures(admin_client, dataset):
    html = admin_client.get(f"/admin/trainer/dataset/{dataset.pk}/change/").content.decode()
    text = _text(html)
    for figure in (
        "read 1,301 9,876,543",
        "kept 1,207 8,765,432",
        "training 1,103 7,654,321",
        "held out 2 54,321",
        "Tokens: 1,398,765 training, 46,789 held out (bytes / 3.6 estimate).",
        "Duplicates: 17 exact and 23 near (MinHash, threshold 0.85, token shingles) of 1247 files checked: 3.2%.",
        "excluded 61 4,321",
        "too-large 33 2,345,678",
        "python 1,001 6,543,210 1,234,567",
        "go 206 765,432 210,987",
        "payments 4f2a9c81be 1,301 1,207 8,765,432 1,445,554",
        "Secrets and personal data scrubbed: 5 in 3 files",
        "password-assignment 4",
        "Email Address 1",
        "payments src/conf.py 12 password-assignment",
        "2 held-out files",
        "payments: app/held_one.py",
        "payments: app/held_two.go",
    ):
        assert figure in text, figure
    files = f"/admin/trainer/datasetfile/?dataset__id__exact={dataset.pk}"
    assert f'href="{files}"' in html
    assert re.search(rf'href="{re.escape(files)}&(amp;)?split__exact=dropped"', html)
    assert "the 0 left out, with reasons" in text and "All 0 files" in text
    # The list's columns read the same report.
    listing = _text(admin_client.get("/admin/trainer/dataset/").content.decode())
    assert "1,445,554" in listing and "3.2%" in listing


def test_dataset_without_a_report_says_so(admin_client):
    from trainer.models import Dataset

    dataset = Dataset.objects.create(status=Dataset.Status.BUILDING, report={"seen_files": 3})
    assert (
        "No report yet." in admin_client.get(f"/admin/trainer/dataset/{dataset.pk}/change/").content.decode()
    )


DECISION = (
    "Promoted: the custom model with repository context (tuned+context) completed 63 of 300 held-out lines exactly, "
    "the base model (served now) 11.\nStatistics: tuned+context against base, prefix mode, 300 held-out lines."
)


def _score(em: float) -> dict:
    """One model's scores in one mode, as the evaluation writes them."""
    return {
        "mode": "prefix",
        "tasks": 300,
        "exact_match": em,
        "exact_match_ci95": [em - 0.02, em + 0.03],
        "edit_similarity": 0.4,
        "by_language": {"python": {"tasks": 300, "exact_match": em, "edit_similarity": 0.4}},
        "examples": [{"path": "app/x.py", "line": 7, "target": "return total", "prediction": "pass"}],
    }


@pytest.fixture
def report():
    from trainer.models import BaseModel, Dataset, EvaluationReport, ModelVersion, TrainingRun

    base = BaseModel.objects.create(slug="b", display_name="b")
    dataset = Dataset.objects.create(status=Dataset.Status.READY)
    run = TrainingRun.objects.create(base=base, dataset=dataset, status=TrainingRun.Status.SUCCEEDED)
    version = ModelVersion.objects.create(
        base=base, run=run, status=ModelVersion.Status.CANDIDATE, served_arm="tuned+context", gate_passed=True
    )
    metrics = {
        "mode": "prefix",
        "tasks": 300,
        "models": {
            "base": {
                "line_completion": {"prefix": _score(0.037), "prefix+context": _score(0.05)},
                "perplexity": {"perplexity": 10.31, "tokens": 4096},
            },
            "candidate": {
                "line_completion": {"prefix": _score(0.083), "prefix+context": _score(0.21)},
                "perplexity": {"perplexity": 6.38, "tokens": 4096},
            },
        },
    }
    return EvaluationReport.objects.create(
        dataset=dataset, version=version, mode="prefix", metrics=metrics, decision=DECISION
    )


@pytest.mark.parametrize("page", ["report", "version"])
def test_evaluation_report_shows_its_figures(admin_client, report, page):
    url = (
        f"/admin/trainer/evaluationreport/{report.pk}/change/"
        if page == "report"
        else f"/admin/trainer/modelversion/{report.version.pk}/change/"
    )
    text = _text(admin_client.get(url).content.decode())
    for figure in (
        "Promoted: the custom model with repository context (tuned+context) completed 63 of 300",
        "Statistics tuned+context against base, prefix mode",
        "Arms (single line, prefix only, the same 300 held-out lines)",
        "base 0.037 0.017–0.067 +0.000 0.400",
        "tuned+context (this version's arm) 0.210 0.190–0.240 +0.173 0.400",
        "In bold: the arm this version serves as",
        "Exact match (95% interval)",
        "Exact match by language (single line, prefix only)",
        "Held-out perplexity (lower is better)",
        "single line, prefix only (headline) base 300 0.037 0.017–0.067 0.400",
        "base 10.31",
        "tuned 6.38",
        "python 300 0.037 0.083",
        "app/x.py:7 return total pass",
    ):
        assert figure in text, figure


def test_version_page_shows_verdict_actions_and_files(admin_client, report):
    version = report.version
    text = _text(admin_client.get(f"/admin/trainer/modelversion/{version.pk}/change/").content.decode())
    assert "Gate verdict at evaluation: Promoted: the custom model" in text
    assert "Now: a candidate, not served." in text
    assert "Promote (serve) Retire Delete" in text
    assert "No GGUF file on disk yet." in text
