"""The forgetting guard: a general-code arm on the standard library, and a gate that refuses a
candidate that forgot general code while it learned the customer's."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from tests.trainer.test_gate import _metrics
from trainer.evaluation.general import (
    GENERAL_FILES,
    GENERAL_MAX_BYTES,
    PATH_PREFIX,
    general_files,
    general_tasks_build,
)
from trainer.evaluation.metrics import wilson_interval
from trainer.evaluation.services import forgetting_judge, promotion_decide
from trainer.tools.scores import Scores

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _general(base: list[int], candidate: list[int]) -> dict:
    def score(h: list[int]) -> dict:
        n = len(h)
        return {
            "tasks": n,
            "exact_match": sum(h) / n,
            "exact_match_ci95": list(wilson_interval(sum(h), n)),
            "edit_similarity": 0.5,
            "hits": h,
        }

    return {
        "source": "the Python 3.11 standard library",
        "files": 24,
        "mode": "prefix",
        "tasks": len(base),
        "models": {"base": score(base), "candidate": score(candidate)},
    }


def _scores(own_base, own_cand, general_base=None, general_cand=None) -> Scores:
    metrics = _metrics(base=own_base, candidate=own_cand)
    if general_base is not None:
        metrics["general"] = _general(general_base, general_cand)
    return Scores.from_metrics(metrics)


# The customer's code: the candidate completes 60 of 300 held-out lines, the base 20 (a clear win).
OWN_BASE = [1] * 20 + [0] * 280
OWN_CAND = [1] * 60 + [0] * 240


def test_the_stdlib_sample_is_fixed_and_general():
    first, again = general_files(), general_files()
    assert first == again and len(first) == GENERAL_FILES
    assert [f["path"] for f in first] == sorted(f["path"] for f in first)
    for record in first:
        rel = record["path"].removeprefix(PATH_PREFIX)
        assert record["path"].startswith(PATH_PREFIX) and record["language"] == "python"
        parts = Path(rel).parts
        assert not {"test", "tests", "idlelib", "site-packages"} & set(parts)
        assert (STDLIB / rel).read_text(encoding="utf-8") == record["text"]
        assert len(record["text"].encode()) <= GENERAL_MAX_BYTES
    # The tasks are built as the customer's held-out lines are, and as stable.
    assert general_tasks_build(first) == general_tasks_build(again)
    assert len(general_tasks_build(first)) == 120


def test_the_sample_never_holds_the_customers_files():
    sample = general_files()
    vendored = sample[3]["text"]  # a customer that committed a copy of a standard-library module
    customer = [vendored, "def main():\n    return 1\n"]
    without = general_files(exclude_texts=customer)
    assert len(without) == GENERAL_FILES
    assert vendored not in [f["text"] for f in without]
    assert [f for f in sample if f["text"] != vendored] == [f for f in without if f in sample]


def test_a_tree_without_sources_gives_no_sample(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "test_x.py").write_text("x = 1\n" * 600)
    (tmp_path / "huge.py").write_text("y = 2\n" * (GENERAL_MAX_BYTES // 4))
    assert general_files(stdlib=tmp_path) == []


def test_a_candidate_that_forgot_general_code_is_refused():
    # General code: the base completes 40 of 120 lines, the candidate 20 (-16.7 points, 20 losses).
    scores = _scores(OWN_BASE, OWN_CAND, [1] * 40 + [0] * 80, [1] * 20 + [0] * 100)
    forgetting = forgetting_judge(scores, max_drop=0.02, alpha=0.05)
    assert forgetting.forgot and forgetting.losses == 20 and forgetting.p < 0.05
    decision = promotion_decide(scores, margin=0.0)
    assert not decision.promote
    assert decision.summary == (
        "Not promoted: the custom model (tuned) completed 60 of 300 held-out lines exactly, the base model "
        "(served now) 20; 40 lines got better and 0 worse; gain +13.3 points on your code, but it forgot "
        "general code: -16.7 points on the Python 3.11 standard library (the base model completed 40 of "
        "120 lines exactly, the custom model 20)."
    )
    assert "McNemar exact p" in decision.details and "falls by more than 0.020" in decision.details


def test_a_small_insignificant_drop_still_passes_and_the_sentence_says_so():
    # 3 lines worse of 120 (-2.5 points, over the 2 allowed) but 3 discordant lines are noise.
    scores = _scores(OWN_BASE, OWN_CAND, [1] * 40 + [0] * 80, [0] * 3 + [1] * 37 + [0] * 80)
    assert not forgetting_judge(scores, max_drop=0.02, alpha=0.05).forgot
    decision = promotion_decide(scores, margin=0.0)
    assert decision.promote
    assert decision.summary.startswith("Promoted: the custom model (tuned) completed 60 of 300")
    assert decision.summary.endswith(
        "Your code: +13.3 points; general code: -2.5 points on the Python 3.11 standard library."
    )


def test_the_allowed_drop_is_the_setting():
    # A significant drop of 16.7 points is allowed when the setting allows 20.
    scores = _scores(OWN_BASE, OWN_CAND, [1] * 40 + [0] * 80, [1] * 20 + [0] * 100)
    assert promotion_decide(scores, margin=0.0, forgetting_max_drop=0.2).promote


def test_a_refusal_for_the_customers_code_also_says_it_forgot():
    scores = _scores(OWN_BASE, OWN_BASE, [1] * 40 + [0] * 80, [1] * 20 + [0] * 100)
    decision = promotion_decide(scores, margin=0.0)
    assert not decision.promote
    assert decision.summary.endswith(
        "— no better. It also forgot general code: -16.7 points on the Python 3.11 standard library."
    )


def test_a_report_without_general_code_is_judged_as_before():
    decision = promotion_decide(_scores(OWN_BASE, OWN_CAND), margin=0.0)
    assert decision.promote and "general code" not in decision.summary
    assert "General code was not scored" in decision.details


@pytest.mark.django_db
def test_evaluation_records_the_general_arm_for_the_base(code_repo, micro_base):
    from tests.trainer.test_stages import _ready_dataset
    from trainer.evaluation.services import evaluation_run

    dataset = _ready_dataset(code_repo)
    report = evaluation_run(dataset=dataset, base=micro_base, max_tasks=4, max_span_tasks=0)
    report.refresh_from_db()
    assert report.status == "done", report.status_reason
    general = report.metrics["general"]
    assert general["source"].endswith("standard library") and general["tasks"] == 4
    assert list(general["models"]) == ["base"]  # no candidate: the base alone
    base = general["models"]["base"]
    assert len(base["hits"]) == 4 and base["mode"] == report.mode
    scores = report.scores
    assert scores.general is not None and scores.general.has_arm("base") and not scores.general.paired()
    assert general["sample_sha256"] and "general code" in report.log


def test_against_a_served_version_general_code_is_still_measured_against_the_base():
    metrics = _metrics(base=OWN_BASE, served=OWN_BASE, candidate=OWN_CAND)
    metrics["general"] = _general([1] * 40 + [0] * 80, [1] * 40 + [0] * 80)
    decision = promotion_decide(Scores.from_metrics(metrics), margin=0.0, served_arm="served", served_pk=9)
    assert decision.promote and decision.reference == "served"
    assert decision.summary.endswith(
        "Your code: +13.3 points; general code: 0 points against the base model on the Python 3.11 "
        "standard library."
    )
