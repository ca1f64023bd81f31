"""Several machines: the database really is PostgreSQL and the broker really is Redis (under
`make test-scaleout`), training jobs go to the GPU queue only, and two GPU workers sharing the
instance storage take over each other's run after one of them is SIGKILLed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.conftest import child_env

scaleout = pytest.mark.skipif(
    not (
        django_settings.HEARTH_REDIS_URL
        and django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    ),
    reason="needs HEARTH_DATABASE=postgres://... and HEARTH_REDIS_URL (make test-scaleout starts both)",
)


def _wait(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a qcluster exited while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Workers:
    """qcluster processes started by a test, each in its own session (a machine's worth of processes)."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, env: dict[str, str]) -> subprocess.Popen:
        log = (self.tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def owner(self, pid: int) -> str:
        """The worker (machine) that started the job process `pid`. Read from the qcluster logs, which
        name each process they start, because django-q2 recycles a process once its job is done: by
        the time a test asks, `pid` may have exited."""
        started = re.compile(rf"ready for work at {pid}\b")
        owners = [
            name
            for name in self.procs
            if started.search((self.tmp_path / f"{name}.log").read_text(errors="replace"))
        ]
        assert len(owners) == 1, f"process {pid} was started by {owners or 'no worker'}"
        return owners[0]

    def stop(self) -> None:
        for name, proc in self.procs.items():
            print(
                f"--- {name} log (tail)",
                (self.tmp_path / f"{name}.log").read_text(errors="replace")[-3000:],
                sep="\n",
            )
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.django_db(transaction=True)
def test_training_jobs_go_to_the_gpu_queue_and_others_to_the_default_one(settings):
    from django.db import transaction
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    from appliance.jobs import job_enqueue

    settings.HEARTH_GPU_QUEUE = "gpu-test"
    default, gpu = get_broker(settings.Q_CLUSTER["name"]), get_broker("gpu-test")
    default.purge_queue()
    gpu.purge_queue()
    previous, Conf.SYNC = Conf.SYNC, False
    try:
        with transaction.atomic():
            job_enqueue("trainer.tasks.training_run_execute", 1, gpu=True)
            job_enqueue("trainer.datasets.tasks.dataset_build_task", [1])
            job_enqueue("trainer.mirrors.tasks.repository_sync_task", 1)
        assert (gpu.queue_size(), default.queue_size()) == (1, 2)
        settings.HEARTH_GPU_QUEUE = ""  # a single box: one queue for everything
        with transaction.atomic():
            job_enqueue("trainer.tasks.training_run_execute", 2, gpu=True)
        assert (gpu.queue_size(), default.queue_size()) == (1, 3)
    finally:
        Conf.SYNC = previous
        default.purge_queue()
        gpu.purge_queue()


@scaleout
@pytest.mark.django_db(transaction=True)
def test_the_database_is_postgresql_and_jobs_travel_through_redis(settings, tmp_path, monkeypatch):
    import redis
    from django.db import connection
    from django_q.brokers import get_broker
    from django_q.brokers.redis_broker import Redis
    from django_q.conf import Conf
    from django_q.models import Success
    from django_q.tasks import async_task

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL")
    assert connection.vendor == "postgresql"

    broker = get_broker()
    assert isinstance(broker, Redis) and broker.ping()
    monkeypatch.setattr(Conf, "SYNC", False)
    task_id = async_task("trainer.tasks.stuck_rows_watchdog")
    # The job waits in Redis, not in a database table, until a worker takes it.
    raw = redis.from_url(settings.HEARTH_REDIS_URL)
    assert raw.llen(f"django_q:{settings.Q_CLUSTER['name']}:q") == 1

    workers = Workers(tmp_path)
    proc = workers.start("worker", child_env(settings))
    try:
        done = _wait(
            lambda: Success.objects.filter(id=task_id).first(), 120, "the worker to run the job", [proc]
        )
        assert done.result == "nothing stuck"  # the worker wrote its result into this PostgreSQL database
        assert raw.llen(f"django_q:{settings.Q_CLUSTER['name']}:q") == 0
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM django_q_ormq")
            assert cursor.fetchone()[0] == 0  # the ORM broker's table stayed empty
    finally:
        workers.stop()


@scaleout
@pytest.mark.django_db(transaction=True)
def test_a_second_gpu_worker_resumes_the_run_of_a_killed_one(
    code_repo, micro_base, settings, tmp_path, monkeypatch
):
    from django_q.conf import Conf

    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.models import TrainingRun
    from trainer.training.config import LoraSettings
    from trainer.training.services import training_run_start
    from trainer.watchdog import stuck_rows_watchdog

    dataset = dataset_build(repositories=[repository_register(source=str(code_repo))])
    settings.HEARTH_GPU_QUEUE = "gpu"
    settings.HEARTH_WORK_STUCK_S = 3
    common = {"HEARTH_GPU_QUEUE": "gpu", "HEARTH_WORK_HEARTBEAT_S": "0.5", "HEARTH_WORK_STUCK_S": "3"}
    workers = Workers(tmp_path)
    try:
        # Two GPU hosts and one CPU host: the same instance storage, each its own local scratch.
        for name, gpu in (("gpu-a", "1"), ("gpu-b", "1"), ("cpu", "0")):
            scratch = tmp_path / f"scratch-{name}"
            workers.start(
                name, child_env(settings, **common, HEARTH_WORKER_GPU=gpu, HEARTH_SCRATCH=str(scratch))
            )
        monkeypatch.setattr(Conf, "SYNC", False)
        lora = LoraSettings(
            max_steps=60,
            seq_len=64,
            grad_accum=1,
            checkpoint_every_s=0.3,
            eval_every_steps=100,
            eval_sequences=2,
            warmup_steps=1,
        )
        run = training_run_start(dataset=dataset, base=micro_base, settings=lora)
        ckpt = Path(run.path) / "checkpoint" / "state.pt"
        procs = list(workers.procs.values())

        def mid_run():
            run.refresh_from_db()
            return run.status == "running" and ckpt.exists() and run.worker_pid

        first_pid = _wait(mid_run, 300, "the run's first checkpoint", procs)
        first = workers.owner(first_pid)
        assert first in {"gpu-a", "gpu-b"}, f"a training job ran on the {first} worker"
        os.killpg(workers.procs[first].pid, signal.SIGKILL)  # the whole machine's worth of processes
        workers.procs[first].wait(timeout=10)
        survivors = [p for n, p in workers.procs.items() if n != first]
        assert _wait(stuck_rows_watchdog, 30, "the watchdog to notice the dead worker", survivors) == [
            f"training run {run.pk} (requeued)"
        ]

        def finished():
            run.refresh_from_db()
            return run.status == TrainingRun.Status.SUCCEEDED

        try:
            # Torch on 2 busy cores can fall to ~12 tokens/s: 60 steps of 64 tokens stay within the wait.
            _wait(finished, 900, "the other GPU worker to finish the run", survivors)
        finally:
            print(run.log)
        second = workers.owner(run.worker_pid)
        assert second in {"gpu-a", "gpu-b"} - {first}
        resumed_at = re.search(r"resumed from checkpoint at step (\d+)", run.log)
        assert resumed_at and 0 < int(resumed_at.group(1)) < 60
        assert run.attempts == 2 and max(run.progress.values_list("step", flat=True)) == 60
    finally:
        workers.stop()
