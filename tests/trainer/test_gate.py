"""The promotion gate: only a paired, significant win on the same held-out lines promotes."""

from __future__ import annotations

import pytest

from trainer.evaluation.metrics import mcnemar_exact_p, paired_difference_ci, wilson_interval
from trainer.evaluation.services import decision_split, promotion_decide
from trainer.tools.scores import Scores


def _metrics(**hits: list[int]) -> dict:
    models = {}
    for label, h in hits.items():
        n = len(h)
        models[label] = {
            "line_completion": {
                "prefix": {
                    "tasks": n,
                    "exact_match": sum(h) / n,
                    "exact_match_ci95": list(wilson_interval(sum(h), n)),
                    "edit_similarity": 0.5,
                    "hits": h,
                }
            },
            "perplexity": {"perplexity": 9.0},
        }
    return {"mode": "prefix", "tasks": len(next(iter(hits.values()))), "models": models}


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(5, 5) == 1.0
    # 10 wins, 0 losses: 2 * 0.5**10
    assert mcnemar_exact_p(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_exact_p(0, 10) == mcnemar_exact_p(10, 0)
    assert mcnemar_exact_p(7, 3) > 0.05


def test_paired_interval_brackets_the_difference():
    a, b = [1] * 30 + [0] * 70, [1] * 10 + [0] * 90
    lo, hi = paired_difference_ci(a, b)
    assert lo < 0.2 < hi and lo > 0


def test_a_worse_candidate_is_not_promoted():
    base = [1] * 40 + [0] * 260
    cand = [1] * 20 + [0] * 280
    decision = promotion_decide(Scores.from_metrics(_metrics(base=base, candidate=cand)), margin=0.0)
    assert not decision.promote and decision.reference == "base"
    assert decision.summary == (
        "Not promoted: the custom model (tuned) completed 20 of 300 held-out lines exactly, the base model "
        "(served now) 40; 0 lines got better and 20 worse — no better."
    )
    assert "McNemar" not in decision.summary and "McNemar exact p" in decision.details


def test_a_lead_of_seven_lines_in_three_hundred_is_noise():
    # The case the gate used to promote: 0.063 against 0.040 on 300 lines, discordant 12 vs 5.
    base = [1] * 12 + [0] * 288  # base right on lines 0-11
    cand = [0] * 5 + [1] * 7 + [1] * 12 + [0] * 276  # loses 5, wins 12
    scores = Scores.from_metrics(_metrics(base=base, candidate=cand))
    decision = promotion_decide(scores, margin=0.0)
    assert scores.headline("candidate").exact_match > scores.headline("base").exact_match
    assert not decision.promote
    assert decision.summary.startswith("Not promoted: the custom model (tuned) completed 19 of 300")
    assert "the base model (served now) 12; 12 lines got better and 5 worse — too close to call." in (
        decision.summary
    )
    # The statistics stay one click away: in the details, and after the sentence in what is stored.
    assert "prefix mode" in decision.details and "p < 0.05" in decision.details
    assert f"McNemar exact p = {mcnemar_exact_p(12, 5):.3g}" in decision.details
    assert decision_split(decision.reason) == (decision.summary, decision.details)


def test_a_clear_paired_win_is_promoted_and_says_why():
    base = [1] * 12 + [0] * 288
    cand = [1] * 12 + [1] * 45 + [0] * 243
    decision = promotion_decide(Scores.from_metrics(_metrics(base=base, candidate=cand)), margin=0.0)
    assert decision.promote
    assert decision.summary.startswith(
        "Promoted: the custom model (tuned) completed 57 of 300 held-out lines exactly, the base model (served now) "
        "12; 45 lines got better and 0 worse; gain +15 points (95% interval +"
    )
    assert "gain +0.150" in decision.details and "45 better, 0 worse" in decision.details


def test_the_served_model_is_the_reference_when_there_is_one():
    base = [0] * 300
    served = [1] * 60 + [0] * 240
    cand = [1] * 50 + [0] * 250  # far better than the base, worse than what is served
    decision = promotion_decide(
        Scores.from_metrics(_metrics(base=base, served=served, candidate=cand)), margin=0.0, served_pk=4
    )
    assert decision.reference == "served" and not decision.promote
    assert (
        "the custom model (tuned) completed 50 of 300 held-out lines exactly, version 4 (served now) 60"
        in (decision.summary)
    )
    assert "base model" not in decision.summary


def test_the_base_is_not_called_served_when_a_version_is():
    # A version is served, built on another base: it was not scored, the base is the reference.
    base = [1] * 12 + [0] * 288
    cand = [1] * 12 + [1] * 45 + [0] * 243
    scores = Scores.from_metrics(_metrics(base=base, candidate=cand))
    decision = promotion_decide(scores, margin=0.0, served_arm="served", served_pk=9)
    assert decision.reference == "base" and "the base model 12;" in decision.summary
    assert "served now" not in decision.summary
    assert "Version 9 is served now but was not scored" in decision.details


def test_the_margin_applies_on_top_of_significance():
    base = [1] * 12 + [0] * 288
    cand = [1] * 12 + [1] * 45 + [0] * 243  # +0.15
    decision = promotion_decide(Scores.from_metrics(_metrics(base=base, candidate=cand)), margin=0.2)
    assert not decision.promote
    assert "— better by 15 points, not by more than the 20 points required." in decision.summary
    assert "Promotion needs a gain over 0.200 and p < 0.05." in decision.details


def test_a_report_without_per_line_results_never_promotes():
    metrics = _metrics(base=[0] * 100, candidate=[1] * 100)
    for m in metrics["models"].values():
        del m["line_completion"]["prefix"]["hits"]
    decision = promotion_decide(Scores.from_metrics(metrics), margin=0.0)
    assert not decision.promote and "no line-by-line results" in decision.summary
    assert "100 of 100" in decision.summary and "no per-line results to pair" in decision.details


def test_line_metrics():
    from trainer.evaluation.metrics import edit_similarity, exact_match

    assert exact_match("    return x  \n", "    return x")
    assert not exact_match("return x", "return y")
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("abcd", "abcd") == 1.0
    assert 0.0 < edit_similarity("return x", "return y") < 1.0
    assert edit_similarity("", "return x") == 0.0
    lo, hi = wilson_interval(5, 100)
    assert lo < 0.05 < hi and 0 <= lo and hi <= 1
    assert wilson_interval(0, 0) == (0.0, 0.0)


def _with_context(metrics: dict, **hits: list[int]) -> dict:
    """Add "<mode>+context" arms (the same held-out lines scored with repository context)."""
    for label, h in hits.items():
        n = len(h)
        metrics["models"][label]["line_completion"]["prefix+context"] = {
            "tasks": n,
            "exact_match": sum(h) / n,
            "exact_match_ci95": list(wilson_interval(sum(h), n)),
            "edit_similarity": 0.6,
            "hits": h,
        }
    return metrics


def test_the_candidate_competes_with_its_best_arm_against_the_base_as_served():
    base, base_ctx = [1] * 12 + [0] * 288, [1] * 40 + [0] * 260
    tuned, tuned_ctx = [1] * 20 + [0] * 280, [1] * 90 + [0] * 210
    scores = Scores.from_metrics(
        _with_context(_metrics(base=base, candidate=tuned), base=base_ctx, candidate=tuned_ctx)
    )
    assert list(scores.arms) == ["base", "base+context", "tuned", "tuned+context"]
    decision = promotion_decide(scores, margin=0.0)
    assert decision.promote and decision.arm == "tuned+context" and decision.reference == "base"
    assert decision.summary.startswith(
        "Promoted: the custom model with repository context (tuned+context) completed 90 of 300"
    )
    assert "the base model (served now) 12;" in decision.summary
    assert decision.details.startswith("tuned+context against base, prefix mode, 300 held-out lines")
    summary = scores.arm_summary("tuned+context")
    assert summary["exact_match"] == 0.3 and summary["perplexity"] is None
    assert scores.arm_summary("tuned")["perplexity"] == 9.0


def test_context_that_does_not_help_is_not_the_arm_served():
    base = [1] * 12 + [0] * 288
    tuned, tuned_ctx = [1] * 60 + [0] * 240, [1] * 60 + [0] * 240  # a tie: serve the cheaper prompt
    scores = Scores.from_metrics(_with_context(_metrics(base=base, candidate=tuned), candidate=tuned_ctx))
    assert scores.best_arm("tuned") == "tuned"
    assert promotion_decide(scores, margin=0.0).arm == "tuned"


def test_the_reference_is_the_arm_the_served_version_serves_as():
    base = [0] * 300
    served, served_ctx = [1] * 30 + [0] * 270, [1] * 80 + [0] * 220
    cand = [1] * 70 + [0] * 230  # beats the served version without context, not as it is served
    metrics = _with_context(
        _metrics(base=base, served=served, candidate=cand), served=served_ctx, candidate=cand
    )
    scores = Scores.from_metrics(metrics)
    assert promotion_decide(scores, margin=0.0).promote  # against the served version's plain arm
    decision = promotion_decide(scores, margin=0.0, served_arm="served+context", served_pk=3)
    assert decision.reference == "served+context" and not decision.promote
    assert "version 3 (served now, with repository context) 80" in decision.summary


def test_a_decision_stored_before_the_split_is_all_sentence():
    assert decision_split("kept as a candidate: exact match 0.1") == (
        "kept as a candidate: exact match 0.1",
        "",
    )


@pytest.mark.django_db
def test_the_version_served_now_is_looked_up_when_the_pipeline_names_only_its_arm():
    from trainer.models import BaseModel, Dataset, ModelVersion, TrainingRun

    base = BaseModel.objects.create(slug="b", display_name="b")
    run = TrainingRun.objects.create(base=base, dataset=Dataset.objects.create(status=Dataset.Status.READY))
    served = ModelVersion.objects.create(base=base, run=run, status=ModelVersion.Status.PROMOTED)
    scores = Scores.from_metrics(
        _metrics(base=[0] * 300, served=[1] * 60 + [0] * 240, candidate=[1] * 50 + [0] * 250)
    )
    decision = promotion_decide(scores, margin=0.0, served_arm="served")
    assert f"version {served.pk} (served now) 60" in decision.summary
