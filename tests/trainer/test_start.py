"""Starting a custom model: rows and one job, nothing built in the request; one run per submission;
a refusal that names the run it refers to; a dataset the builder refuses fails its run."""

from __future__ import annotations

import pytest

from trainer.training.config import LoraSettings

pytestmark = pytest.mark.django_db

SMALL = LoraSettings(max_steps=2, seq_len=64, grad_accum=1, eval_sequences=1, warmup_steps=0)


@pytest.fixture
def repo(code_repo):
    from trainer.mirrors.services import repository_register

    return repository_register(source=str(code_repo))


def test_start_creates_rows_and_queues_one_job_without_building(
    repo, micro_base, django_capture_on_commit_callbacks
):
    from trainer.models import Dataset, TrainingRun
    from trainer.pipeline import training_start

    with django_capture_on_commit_callbacks(execute=False) as queued:
        run = training_start(repositories=[repo], base=micro_base, settings=SMALL, submission="k1")
    assert run.status == TrainingRun.Status.QUEUED and run.dataset.status == Dataset.Status.PENDING
    assert len(queued) == 1 and not run.dataset.path  # nothing built inside the request


def test_the_same_submission_twice_is_one_run_and_one_dataset(repo, micro_base, settings):
    from trainer.models import Dataset, TrainingRun
    from trainer.pipeline import training_start

    settings.HEARTH_RETRAIN_MIN_INTERVAL_H = 168  # the second click must not meet the rate limit
    first = training_start(repositories=[repo], base=micro_base, settings=SMALL, submission="same")
    second = training_start(repositories=[repo], base=micro_base, settings=SMALL, submission="same")
    assert second.pk == first.pk
    assert TrainingRun.objects.count() == 1 and Dataset.objects.count() == 1


def test_a_refusal_names_the_run_that_holds_the_limit(repo, micro_base, settings):
    from trainer.pipeline import training_start
    from trainer.training.services import RetrainLimited

    settings.HEARTH_RETRAIN_MIN_INTERVAL_H = 168
    first = training_start(repositories=[repo], base=micro_base, settings=SMALL, submission="a")
    with pytest.raises(RetrainLimited) as caught:
        training_start(repositories=[repo], base=micro_base, settings=SMALL, submission="b")
    assert caught.value.run.pk == first.pk and f"run {first.pk}" in str(caught.value)
    assert "give a reason" in str(caught.value)
    forced = training_start(
        repositories=[repo], base=micro_base, settings=SMALL, submission="c", override_reason="hotfix"
    )
    assert forced.pk != first.pk


def test_the_job_builds_the_dataset_then_queues_the_fine_tune(
    repo, micro_base, django_capture_on_commit_callbacks
):
    from trainer.models import Dataset
    from trainer.pipeline import custom_model_prepare, training_start

    with django_capture_on_commit_callbacks(execute=False):
        run = training_start(repositories=[repo], base=micro_base, settings=SMALL)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert custom_model_prepare(run) == f"run {run.pk} queued for training"
    run.dataset.refresh_from_db()
    assert run.dataset.status == Dataset.Status.READY and len(queued) == 1


def test_a_refused_dataset_fails_its_run_with_the_reason(
    tmp_path, micro_base, django_capture_on_commit_callbacks
):
    from tests.conftest import git_repo_make
    from trainer.datasets.builder import DatasetOptions
    from trainer.mirrors.services import repository_register
    from trainer.models import TrainingRun
    from trainer.pipeline import custom_model_prepare, training_start

    empty = repository_register(source=str(git_repo_make(tmp_path / "docs", {"README.md": "# docs only\n"})))
    with django_capture_on_commit_callbacks(execute=False):
        run = training_start(repositories=[empty], base=micro_base, settings=SMALL, options=DatasetOptions())
    custom_model_prepare(run)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and f"Dataset {run.dataset_id} failed" in run.status_reason


def test_a_run_behind_a_stuck_dataset_fails_when_the_watchdog_releases_it(
    repo, micro_base, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from trainer.models import Dataset, TrainingRun
    from trainer.pipeline import training_start
    from trainer.watchdog import stuck_rows_watchdog

    with django_capture_on_commit_callbacks(execute=False):
        run = training_start(repositories=[repo], base=micro_base, settings=SMALL)
    run.dataset.transition(Dataset.Status.BUILDING)
    Dataset.objects.filter(pk=run.dataset_id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    stuck_rows_watchdog()
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "Dataset" in run.status_reason
