"""Estimates that hold: absurd settings refused by field with their limit, and a preview whose token
and step counts are the ones the run then trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.training.config import LoraSettings, SettingsInvalid


def test_absurd_settings_are_refused_by_field_with_the_limit_named():
    with pytest.raises(SettingsInvalid) as caught:
        LoraSettings(epochs=100_000, rank=0, seq_len=10**7)
    problems = caught.value.problems
    assert set(problems) == {"epochs", "rank", "seq_len"}
    assert problems["epochs"] == "Epochs must be between 0 and 50 (it is 100,000)."
    assert "Seq len must be between 32 and 32,768" in problems["seq_len"]
    assert "Invalid training settings" in str(caught.value)
    LoraSettings(epochs=50, max_steps=1_000_000)  # the limits themselves are allowed


def test_a_non_number_is_named_not_compared():
    with pytest.raises(SettingsInvalid) as caught:
        LoraSettings(dropout="lots")
    assert caught.value.problems == {"dropout": "Dropout must be a number."}


@pytest.mark.django_db
def test_preview_counts_the_tokens_and_steps_the_run_trains(code_repo, micro_base, tmp_path):
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.pipeline import dataset_preview
    from trainer.tools.dataset_files import dataset_files_read
    from trainer.training.loop import train
    from trainer.training.modeling import method_choose

    repo = repository_register(source=str(code_repo))
    settings = LoraSettings(epochs=0.02, seq_len=64, grad_accum=1, eval_sequences=1, warmup_steps=0)
    preview = dataset_preview(repositories=[repo], base=micro_base, settings=settings)
    assert not preview.rejected and preview.train_tokens > 0
    # The builder's own figure is a words-and-punctuation estimate; the run counts real tokens.
    assert preview.train_tokens != preview.report["tokens"]["train"]

    dataset = dataset_build(repositories=[repo])
    summary = train(
        hf_path=micro_base.hf_path,
        train_files=dataset_files_read(Path(dataset.path), "train"),
        heldout_files=dataset_files_read(Path(dataset.path), "heldout")[:1],
        settings=settings,
        method=method_choose("none"),
        out_dir=tmp_path / "run",
        log=lambda m: None,
    )
    assert summary["train_tokens"] == preview.train_tokens
    assert summary["total_steps"] == preview.steps


@pytest.mark.django_db
def test_time_after_training_comes_from_the_last_measured_version(micro_base, code_repo):
    from datetime import timedelta

    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.models import EvaluationReport, ModelVersion, TrainingRun
    from trainer.training.plan import after_training_s

    assert after_training_s(micro_base) == (
        None,
        "no model version of hearth-micro-test exported and evaluated yet",
    )
    dataset = dataset_build(repositories=[repository_register(source=str(code_repo))])
    run = TrainingRun.objects.create(base=micro_base, dataset=dataset)
    version = ModelVersion.objects.create(
        base=micro_base, run=run, manifest={"timings": {"merge_s": 10.0, "convert_s": 5.0}}
    )
    report = EvaluationReport.objects.create(dataset=dataset, version=version)
    report.transition(EvaluationReport.Status.DONE)
    EvaluationReport.objects.filter(pk=report.pk).update(updated_at=report.created_at + timedelta(seconds=45))
    assert after_training_s(micro_base) == (60.0, f"version {version.pk}")
