"""The job queue runs Hearth's own functions and nothing else: every function Hearth enqueues or
schedules is on `JOB_FUNCTIONS`, and a worker refuses any other (a Schedule row, a queued task, a
result hook) with a failed task that names it, without running it."""

from __future__ import annotations

import ast
import os
import pydoc
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from appliance.jobs import JOB_FUNCTIONS, RETIRED_JOBS, JobRefused, job_enqueue
from tests.conftest import child_env

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "trainer", "inference", "webui")
ENQUEUERS = {"job_enqueue", "async_task", "schedule"}
HOOK_MARKER: list[Path] = []


def marker_hook(task) -> None:
    """A result hook that leaves a trace (what an attacker's hook would do instead)."""
    HOOK_MARKER[0].write_text("hook ran")


# --- the list covers what Hearth queues -----------------------------------------------------------


def _constants(tree: ast.Module) -> dict[str, str]:
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    found[target.id] = node.value.value
    return found


def _looks_like_a_job(value: str) -> bool:
    parts = value.split(".")
    return (
        len(parts) >= 3
        and parts[0] in PACKAGES
        and any(p.endswith("tasks") for p in parts[1:-1])
        and parts[-1].isidentifier()
    )


def _string_of(node, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    return None


def _jobs_named(tree: ast.Module, where: str) -> tuple[set[str], list[str]]:
    constants = _constants(tree)
    found: set[str] = set()
    unreadable: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in ENQUEUERS and node.args:
                value = _string_of(node.args[0], constants)
                if value is None:
                    unreadable.append(f"{where}:{node.lineno}")
                else:
                    found.add(value)
            found.update(_string_of(k.value, constants) for k in node.keywords if k.arg == "func")
        elif isinstance(node, ast.Dict):
            found.update(
                _string_of(value, constants)
                for key, value in zip(node.keys, node.values, strict=True)
                if isinstance(key, ast.Constant) and key.value == "func"
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _looks_like_a_job(node.value):
            found.add(node.value)
    found.discard(None)
    return found, unreadable


def enqueued_functions(root: Path = ROOT) -> tuple[set[str], list[str]]:
    """Every job function the sources under `root` name, and the places where one cannot be read.

    Read: the first argument of job_enqueue/async_task/schedule, `func=` keywords, `"func":` keys of
    dict literals (a string, or a module constant), and any string that names a function of a tasks
    module (the schedules the migrations create)."""
    found: set[str] = set()
    unreadable: list[str] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if path == root / "appliance" / "jobs.py":  # the list itself
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            more, bad = _jobs_named(tree, str(path.relative_to(root)))
            found |= more
            unreadable += bad
    return found, unreadable


def test_every_function_hearth_enqueues_or_schedules_is_listed():
    found, unreadable = enqueued_functions()
    assert unreadable == [], "enqueue a job by a literal name (or a module constant) so it can be checked"
    assert found, "the scan found no job at all"
    assert found - JOB_FUNCTIONS - RETIRED_JOBS == set()
    assert not RETIRED_JOBS & JOB_FUNCTIONS
    assert JOB_FUNCTIONS - found == set(), "a listed function nothing enqueues: drop it from the list"


def test_the_scan_sees_an_unlisted_job(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "trainer" / "x.py").write_text(
        "def f(pk):\n"
        "    job_enqueue('trainer.things.tasks.new_task', pk)\n"
        "    job_enqueue(some_variable, pk)\n"
        "S = {'name': 'n', 'func': 'trainer.other.sweep'}\n"
    )
    found, unreadable = enqueued_functions(tmp_path)
    assert found == {"trainer.things.tasks.new_task", "trainer.other.sweep"}
    assert unreadable == ["trainer/x.py:3"]


def test_every_listed_function_exists():
    for name in JOB_FUNCTIONS:
        assert callable(pydoc.locate(name)), name


@pytest.mark.django_db
def test_the_schedules_hearth_creates_are_listed(settings):
    from django_q.models import Schedule

    from trainer.mirrors.services import mirror_schedule_ensure

    settings.HEARTH_MIRROR_SYNC_MINUTES = 15
    mirror_schedule_ensure()
    funcs = set(Schedule.objects.values_list("func", flat=True))
    assert len(funcs) >= 5 and funcs <= JOB_FUNCTIONS


def test_job_enqueue_refuses_an_unlisted_function():
    with pytest.raises(JobRefused, match="os.system"):
        job_enqueue("os.system", "true")


# --- the worker refuses the rest ------------------------------------------------------------------


def test_the_guard_is_installed_in_every_process():
    from django_q import worker as q_worker

    from appliance.jobs import job_worker

    assert q_worker.worker is job_worker
    if "django_q.cluster" in sys.modules:
        assert sys.modules["django_q.cluster"].worker is job_worker


@pytest.mark.django_db
def test_a_queued_os_system_fails_and_runs_nothing(tmp_path):
    """In-process (sync) execution goes through the same worker loop as the cluster's."""
    from django_q.models import Task
    from django_q.tasks import async_task

    marker = tmp_path / "ran"
    task_id = async_task("os.system", f"touch {marker}", sync=True)
    task = Task.objects.get(id=task_id)
    assert not marker.exists()
    assert task.success is False
    assert "os.system" in task.result and "not one of Hearth's own jobs" in task.result


@pytest.mark.django_db
def test_a_listed_job_still_runs():
    from django_q.models import Task
    from django_q.tasks import async_task

    task = Task.objects.get(id=async_task("inference.tasks.telemetry_purge_task", sync=True))
    assert task.success is True, task.result


@pytest.mark.django_db
def test_a_result_hook_is_refused(tmp_path):
    from django_q.models import Task
    from django_q.tasks import async_task

    HOOK_MARKER[:] = [tmp_path / "hook"]
    hook = f"{__name__}.marker_hook"
    task = Task.objects.get(id=async_task("inference.tasks.telemetry_purge_task", hook=hook, sync=True))
    assert task.success is False and "result hook" in task.result
    assert not HOOK_MARKER[0].exists()
    # A row saved with a hook (the admin's resubmit, a crafted row) does not call it either.
    Task.objects.create(
        id="f" * 32, name="x", func="os.getpid", hook=hook, started=task.started, stopped=task.stopped
    )
    assert not HOOK_MARKER[0].exists()


def test_pre_execute_is_the_second_line():
    from django_q.signals import pre_execute

    with pytest.raises(JobRefused, match="os.system"):
        pre_execute.send(sender="django_q", func=print, task={"func": "os.system", "name": "t"})
    pre_execute.send(sender="django_q", func=print, task={"func": "trainer.tasks.retrain_if_changed"})


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_refuses_a_schedule_and_a_queued_task(settings, tmp_path, monkeypatch):
    """A Schedule row for os.system (what the admin's Schedule page could add) and a task queued for
    it: a real qcluster records both as failed and nothing runs; a listed job next to them succeeds."""
    from django_q.conf import Conf
    from django_q.models import Schedule, Task
    from django_q.scheduler import scheduler
    from django_q.tasks import async_task

    monkeypatch.setattr(Conf, "SYNC", False)
    by_schedule, by_queue = tmp_path / "by-schedule", tmp_path / "by-queue"
    Schedule.objects.update(next_run=timezone.now() + timedelta(days=1))  # Hearth's own: not now
    Schedule.objects.create(
        name="evil", func="os.system", args=repr(f"touch {by_schedule}"), schedule_type=Schedule.ONCE
    )
    scheduler()  # what the cluster's sentinel does every 30 s: due schedules become queued tasks
    async_task("os.system", f"touch {by_queue}", task_name="evil-queued")
    async_task("inference.tasks.telemetry_purge_task", task_name="listed")

    log_path = tmp_path / "qcluster.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=django_settings.BASE_DIR,
            env=child_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while Task.objects.count() < 3:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    refused = Task.objects.filter(func="os.system")
    assert refused.count() == 2 and not refused.filter(success=True).exists(), log_path.read_text()[-3000:]
    assert all("os.system" in t.result for t in refused)
    assert Task.objects.get(name="listed").success is True
    assert not by_schedule.exists() and not by_queue.exists()
