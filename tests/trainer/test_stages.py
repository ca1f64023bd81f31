"""Every stage runs through the one stage runner (appliance/stages.py): one test per outcome (done,
Hearth error, unexpected error, killed worker) for each of the six stages.

The errors are raised inside each stage's real work (the function the stage calls first); the
killed worker is a real process that claims the row through the runner and dies with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from appliance.errors import (
    BaseModelError,
    DatasetError,
    EvaluationError,
    ExportError,
    MirrorError,
    TrainingError,
)
from tests.conftest import child_env
from tests.trainer.test_watchdog import _wait

TINY = {
    "max_steps": 6,
    "seq_len": 64,
    "grad_accum": 1,
    "eval_every_steps": 100,
    "eval_sequences": 2,
    "warmup_steps": 1,
}


def _repository(code_repo):
    from trainer.mirrors.services import repository_create

    return repository_create(source=str(code_repo))


def _dataset(code_repo):
    from trainer.datasets.services import dataset_create
    from trainer.mirrors.services import repository_register

    return dataset_create(repositories=[repository_register(source=str(code_repo))])


def _ready_dataset(code_repo):
    from trainer.datasets.services import dataset_execute

    return dataset_execute(dataset=_dataset(code_repo))


def _run(code_repo, micro_base):
    """A queued run (created as `training_run_start` does, without queueing its job: unit tests run
    jobs in-process, and the test runs the stage itself)."""
    from appliance import paths
    from trainer.models import TrainingRun
    from trainer.training.config import LoraSettings

    run = TrainingRun.objects.create(
        dataset=_ready_dataset(code_repo), base=micro_base, settings=LoraSettings(**TINY).as_dict()
    )
    run.path = str(paths.run_dir(run.pk))
    run.save(update_fields=["path"])
    return run


def _version(code_repo, micro_base):
    """A model version waiting for its build, behind a run that trained (status only: the error
    cases stop before the adapter is read)."""
    from appliance import paths
    from trainer.models import ModelVersion, TrainingRun

    run = _run(code_repo, micro_base)
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded")
    version = ModelVersion.objects.create(base=micro_base, run=run)
    version.path = str(paths.model_version_dir(version.pk))
    version.save(update_fields=["path"])
    return version


def _report(code_repo, micro_base):
    from trainer.models import EvaluationReport

    return EvaluationReport.objects.create(dataset=_ready_dataset(code_repo))


# stage: (make the row, run the stage on it, the work function an error is raised from, Hearth's error)
def _sync(row):
    from trainer.mirrors.services import repository_sync

    return repository_sync(repo=row)


def _build(row):
    from trainer.datasets.services import dataset_execute

    return dataset_execute(dataset=row)


def _bootstrap(_row):
    from trainer.basemodels.services import basemodel_bootstrap

    return basemodel_bootstrap(seed=7)


def _train(row):
    from trainer.training.services import training_run_execute

    return training_run_execute(run=row)


def _version_build(row):
    from trainer.pipeline import model_version_build

    return model_version_build(row)


def _evaluate(row):
    from trainer.evaluation.services import evaluation_run

    return evaluation_run(dataset=row.dataset, base=_evaluate.base, max_tasks=4, max_span_tasks=0)


STAGES = {
    "mirror sync": (_repository, _sync, "trainer.mirrors.services.git", MirrorError),
    "dataset": (_dataset, _build, "trainer.datasets.services.dataset_build_files", DatasetError),
    "base model": (None, _bootstrap, "trainer.basemodels.bootstrap.micro_model_build", BaseModelError),
    "training": (_run, _train, "trainer.training.loop.train", TrainingError),
    "export": (_version, _version_build, "trainer.export.services.model_version_export", ExportError),
    "evaluation": (_report, _evaluate, "trainer.evaluation.services.models_compare", EvaluationError),
}


def _make(stage: str, code_repo, micro_base):
    make = STAGES[stage][0]
    if make is None:
        return None
    return make(code_repo) if make in (_repository, _dataset) else make(code_repo, micro_base)


def _the_row(stage: str, row):
    """The row the stage worked on (a base model's row is created by the stage itself; an
    evaluation's by `evaluation_run`)."""
    from trainer.models import BaseModel, EvaluationReport

    if stage == "base model":
        return BaseModel.objects.get(slug="hearth-micro-s7")
    if stage == "evaluation":
        return EvaluationReport.objects.order_by("-pk").first()
    return type(row).objects.get(pk=row.pk)


def _raise(exc):
    def boom(*args, **kwargs):
        raise exc

    return boom


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_hearth_error_fails_the_row_with_its_reason(stage, code_repo, micro_base, monkeypatch):
    _evaluate.base = micro_base
    row = _make(stage, code_repo, micro_base)
    _, run, target, error = STAGES[stage]
    monkeypatch.setattr(target, _raise(error("the disk is full")))
    try:
        run(row)
    except error:
        pass  # mirror, dataset, base model and evaluation raise it again; training and export record it
    row = _the_row(stage, row)
    assert row.status == "failed"
    assert row.status_reason == "the disk is full"
    assert "failed: the disk is full" in row.log
    assert "Traceback" not in row.log  # Hearth's own refusal: its reason is enough


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stage", list(STAGES))
def test_an_unexpected_error_fails_the_row_at_once_with_its_traceback(
    stage, code_repo, micro_base, monkeypatch
):
    _evaluate.base = micro_base
    row = _make(stage, code_repo, micro_base)
    _, run, target, _error = STAGES[stage]
    monkeypatch.setattr(target, _raise(KeyError("tokens")))
    with pytest.raises(KeyError):
        run(row)
    row = _the_row(stage, row)
    assert row.status == "failed"  # before: "working" until the watchdog (training: retried 3 times)
    assert row.status_reason == "Unexpected error (KeyError): 'tokens'"
    assert "unexpected error:\nTraceback" in row.log and "KeyError: 'tokens'" in row.log


def _manifest_checked(folder: Path, stage: str) -> dict:
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    assert manifest["stage"] == stage
    assert (
        manifest["libraries"]["torch"] and manifest["llama_cpp"] == manifest["libraries"]["llama-cpp-python"]
    )
    assert manifest["timings"]["seconds"] >= 0
    return manifest


@pytest.mark.django_db(transaction=True)
def test_mirror_dataset_and_base_stages_finish_with_a_manifest(code_repo):
    from trainer.basemodels.services import basemodel_bootstrap

    repo = _sync(_repository(code_repo))
    assert repo.status == "ready" and "mirror sync done in" in repo.log and repo.worker

    from trainer.datasets.services import dataset_create

    dataset = _build(dataset_create(repositories=[repo]))
    assert dataset.status == "ready" and "dataset done in" in dataset.log
    manifest = _manifest_checked(dataset.path, "dataset")
    assert dataset.manifest == manifest
    assert set(manifest["files"]) == {"train.jsonl", "heldout.jsonl", "report.json"}
    assert manifest["context_index"]["split"] == "train" and manifest["timings"]["index_s"] >= 0

    base = basemodel_bootstrap(seed=7)
    assert base.status == "ready" and "base model done in" in base.log
    _manifest_checked(Path(base.hf_path).parent, "base model")


@pytest.mark.django_db(transaction=True)
def test_training_export_and_evaluation_finish_through_the_runner(code_repo, micro_base, settings):
    from trainer.models import EvaluationReport, ModelVersion

    settings.HEARTH_PROMOTION_MARGIN = 1.0  # the micro model never passes: the version stays a candidate
    run = _train(_run(code_repo, micro_base))
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 1 and "training done in" in run.log
    assert _manifest_checked(run.path, "training")["timings"]["steps"] == TINY["max_steps"]

    from trainer.pipeline import after_training

    after_training(run)  # queues the version's build, which unit tests run in-process
    version = ModelVersion.objects.get(run=run)
    assert version.status == "candidate" and "export done in" in version.log, version.log
    _manifest_checked(version.path, "export")
    report = EvaluationReport.objects.get(version=version)
    assert report.status == "done" and "evaluation done in" in report.log


WORKER = """
import sys, time, django
django.setup()
from django.apps import apps
from appliance.stages import stage_run
model = apps.get_model("trainer", sys.argv[1])
row = model.objects.get(pk=int(sys.argv[2]))
claim_to = sys.argv[3] or None

def work(stage):
    print("claimed", flush=True)
    time.sleep(120)

stage_run(row, work, stage=sys.argv[1], claim_to=claim_to, done_to="ready")
"""

# stage: the model, the status a worker claims it into (None: the row is created in it)
KILLED = {
    "mirror sync": ("Repository", "syncing"),
    "dataset": ("Dataset", "building"),
    "base model": ("BaseModel", ""),
    "training": ("TrainingRun", "running"),
    "export": ("ModelVersion", ""),
    "evaluation": ("EvaluationReport", ""),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stage", list(KILLED))
def test_a_killed_worker_is_noticed_by_the_one_watchdog(stage, code_repo, micro_base, settings, monkeypatch):
    from trainer.models import BaseModel
    from trainer.watchdog import stuck_rows_watchdog

    settings.HEARTH_WORK_STUCK_S = 3.0
    queued = []  # the jobs the watchdog queues (unit tests would run them in-process)
    monkeypatch.setattr("trainer.watchdog.job_enqueue", lambda func, *args, **kw: queued.append((func, args)))
    if stage == "base model":
        row = BaseModel.objects.create(slug="importing", display_name="x", hf_path=str(micro_base.hf_path))
    else:
        row = _make(stage, code_repo, micro_base)
    model, claim_to = KILLED[stage]
    env = child_env(settings, HEARTH_WORK_HEARTBEAT_S="0.2", DJANGO_SETTINGS_MODULE="appliance.settings")
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, model, str(row.pk), claim_to],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == b"claimed", proc.stdout.read()
        held = type(row).objects.get(pk=row.pk)
        assert held.worker.endswith(f"pid {proc.pid}") and held.status in held.WORKING
        assert stuck_rows_watchdog() == []  # alive: its heartbeat keeps it
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    released = _wait(stuck_rows_watchdog, 60, "the watchdog to release the dead worker's row")
    row = type(row).objects.get(pk=row.pk)
    assert f"pid {proc.pid}" in row.status_reason and row.status_reason.startswith("Stuck in")
    if stage == "training":  # back to the queue, to resume from its checkpoint in the next worker
        assert released == [f"training run {row.pk} (requeued)"]
        assert row.status == "queued" and "resumes from its last checkpoint" in row.status_reason
        assert queued == [("trainer.tasks.training_run_execute", (row.pk,))]
    else:
        assert len(released) == 1 and row.status == "failed" and not queued
