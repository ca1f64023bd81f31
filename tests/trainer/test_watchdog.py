"""Rows a dead worker left in a working state: the watchdog fails them with a reason; the admin retries.

The worker here is a real process that claims the row and keeps its heartbeat (as a sync, a dataset
build or a version build does) and is killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from tests.conftest import child_env

WORKER = """
import sys, time, django
django.setup()
from appliance.stages import stage_claim
from appliance.status import heartbeat_keep
from trainer.models import Repository
repo = Repository.objects.get(pk=int(sys.argv[1]))
stage_claim(repo, claim_to=Repository.Status.SYNCING)
with heartbeat_keep(repo):
    print("claimed", flush=True)
    time.sleep(120)
"""


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_a_killed_sync_worker_is_released_then_synced_again(code_repo, settings):
    from appliance.models import Notification
    from trainer.mirrors.services import repositories_sync_all, repository_create
    from trainer.models import Repository
    from trainer.watchdog import stuck_rows_watchdog

    repo = repository_create(source=str(code_repo))
    settings.HEARTH_WORK_STUCK_S = 3.0  # fifteen beats: a busy host may delay a few
    env = child_env(settings, HEARTH_WORK_HEARTBEAT_S="0.2", DJANGO_SETTINGS_MODULE="appliance.settings")
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(repo.pk)],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == b"claimed", proc.stdout.read()
        claimed = Repository.objects.get(pk=repo.pk).heartbeat_at
        outlived = timedelta(seconds=settings.HEARTH_WORK_STUCK_S)

        def beat_past_the_stuck_limit() -> bool:
            return Repository.objects.get(pk=repo.pk).heartbeat_at - claimed > outlived

        # Claimed longer than the stuck limit, and a beat just seen: only the heartbeat keeps it.
        _wait(beat_past_the_stuck_limit, 60, "the live worker's heartbeat to outlast the stuck limit")
        assert stuck_rows_watchdog() == []
        repo.refresh_from_db()
        assert repo.status == "syncing" and repo.worker.endswith(f"pid {proc.pid}")
        # Before the fix, the scheduled sync skipped a syncing row forever.
        assert repositories_sync_all() == ([], [])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    released = _wait(stuck_rows_watchdog, 60, "the watchdog to release the dead worker's row")
    assert released == [f"repository {repo.name}"]
    repo.refresh_from_db()
    assert repo.status == "failed"
    assert repo.status_reason.startswith("Stuck in 'syncing'") and f"pid {proc.pid}" in repo.status_reason
    assert "watchdog: Stuck in 'syncing'" in repo.log
    assert Notification.objects.filter(title=f"Repository {repo.name} was stuck and is now failed").exists()
    assert stuck_rows_watchdog() == []  # released once

    synced, failed = repositories_sync_all()
    assert [r.pk for r in synced] == [repo.pk] and not failed
    assert Repository.objects.get(pk=repo.pk).status == "ready"


def _stale(row, status: str, seconds: float = 3600) -> None:
    """A row as a worker that died `seconds` ago leaves it."""
    type(row).objects.filter(pk=row.pk).update(
        status=status, heartbeat_at=timezone.now() - timedelta(seconds=seconds), worker="elsewhere pid 1"
    )


@pytest.mark.django_db(transaction=True)
def test_a_stuck_dataset_is_released_and_the_admin_retries_it(admin_client, code_repo):
    from appliance.models import AuditEntry
    from trainer.datasets.services import dataset_create
    from trainer.mirrors.services import repository_register
    from trainer.watchdog import stuck_rows_watchdog

    dataset = dataset_create(repositories=[repository_register(source=str(code_repo))])
    _stale(dataset, "building")
    page = admin_client.get("/admin/").content.decode()
    assert f"Dataset {dataset.pk} is building but its worker (elsewhere pid 1) has been silent" in page

    assert stuck_rows_watchdog() == [f"dataset {dataset.pk}"]
    dataset.refresh_from_db()
    assert dataset.status == "failed" and "elsewhere pid 1" in dataset.status_reason
    assert "(elsewhere pid 1)" not in admin_client.get("/admin/").content.decode()

    response = admin_client.post(
        "/admin/trainer/dataset/", {"action": "retry", "_selected_action": [dataset.pk]}, follow=True
    )
    assert f"Dataset {dataset.pk}: build of dataset {dataset.pk} queued." in response.content.decode()
    dataset.refresh_from_db()
    assert dataset.status == "ready" and dataset.train_files > 0  # jobs run in-process in tests
    assert "retry queued" in dataset.log
    assert AuditEntry.objects.filter(action="retry", target=f"dataset {dataset.pk}").exists()

    again = admin_client.post(
        "/admin/trainer/dataset/", {"action": "retry", "_selected_action": [dataset.pk]}, follow=True
    )
    assert "is ready; only a failed one can be retried" in again.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_version_waiting_in_the_queue_is_not_stuck_and_a_dead_build_is(micro_base, code_repo):
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.models import EvaluationReport, ModelVersion, TrainingRun
    from trainer.watchdog import row_retry, stuck_rows_watchdog

    dataset = dataset_build(repositories=[repository_register(source=str(code_repo))])
    run = TrainingRun.objects.create(base=micro_base, dataset=dataset, status="failed")
    version = ModelVersion.objects.create(base=micro_base, run=run)
    ModelVersion.objects.filter(pk=version.pk).update(updated_at=timezone.now() - timedelta(days=1))
    assert stuck_rows_watchdog() == []  # never claimed by a worker: it waits in the queue

    report = EvaluationReport.objects.create(dataset=dataset, version=version)
    _stale(version, "building")
    _stale(report, "running")
    assert sorted(stuck_rows_watchdog()) == sorted(
        [f"model version {version.pk}", f"evaluation report {report.pk}"]
    )
    version.refresh_from_db()
    assert version.status == "failed" and "Stuck in 'building'" in version.log

    from appliance.errors import PipelineError

    with pytest.raises(PipelineError, match="did not succeed; start a new one"):
        row_retry(version)
    with pytest.raises(PipelineError, match="Retry the model version"):
        row_retry(EvaluationReport.objects.get(pk=report.pk))


@pytest.mark.django_db
def test_a_sync_and_a_dataset_build_claim_their_rows(code_repo):
    """Each working path stamps its row's worker and heartbeat: a row it left unclaimed would look
    queued to the watchdog forever."""
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register

    repo = repository_register(source=str(code_repo))
    dataset = dataset_build(repositories=[repo])
    for row in (repo, dataset):
        row.refresh_from_db()
        assert row.worker.endswith(f"pid {os.getpid()}") and row.heartbeat_at is not None
