"""Crash safety with a real qcluster: SIGKILL the worker mid-run; the run resumes and finishes once."""

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


def _wait(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"qcluster exited while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_run_resumes_and_finishes_exactly_once(
    code_repo, micro_base, tmp_path, settings, monkeypatch
):
    from django_q.conf import Conf

    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.models import ModelVersion, TrainingRun
    from trainer.training.config import LoraSettings
    from trainer.training.services import training_run_start
    from trainer.watchdog import stuck_rows_watchdog

    dataset = dataset_build(repositories=[repository_register(source=str(code_repo))])
    env = child_env(settings, HEARTH_WORK_HEARTBEAT_S="0.5", HEARTH_WORK_STUCK_S="3")
    log = (tmp_path / "qcluster.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    monkeypatch.setattr(Conf, "SYNC", False)
    settings.HEARTH_WORK_STUCK_S = 3
    try:
        # About 8 s of training on two cores: room for the kill to land mid-run (150 steps took under 3 s).
        lora = LoraSettings(
            max_steps=400,
            seq_len=64,
            grad_accum=1,
            checkpoint_every_s=0.3,
            eval_every_steps=200,
            eval_sequences=2,
            warmup_steps=1,
        )
        run = training_run_start(dataset=dataset, base=micro_base, settings=lora)
        ckpt = Path(run.path) / "checkpoint" / "state.pt"

        def mid_run():
            # The step on the row is refreshed every few seconds; the checkpoint every 0.3 s.
            run.refresh_from_db()
            return run.status == "running" and ckpt.exists() and run.worker_pid

        pid = _wait(mid_run, 300, "the run to write its first checkpoint", proc)
        os.kill(pid, signal.SIGKILL)

        def requeued():
            return stuck_rows_watchdog()  # what the scheduled watchdog runs every minute

        assert _wait(requeued, 30, "the watchdog to notice the dead worker", proc) == [
            f"training run {run.pk} (requeued)"
        ]

        def finished():
            run.refresh_from_db()
            version = ModelVersion.objects.filter(run=run).first()
            return run.status == "succeeded" and version and version.status != "building"

        try:
            _wait(finished, 900, "the resumed run and its model version", proc)
        finally:
            print(run.log)
        assert run.attempts == 2
        resumed_at = re.search(r"resumed from checkpoint at step (\d+)", run.log)
        assert resumed_at, "the second attempt did not resume from the checkpoint"
        killed_at = int(resumed_at.group(1))
        assert 0 < killed_at < 400
        assert run.worker_pid != pid
        assert ModelVersion.objects.filter(run=run).count() == 1
        steps = list(run.progress.values_list("step", flat=True))
        resumed = [s for s in steps if s > killed_at]
        assert resumed and max(steps) == run.summary["total_steps"] == 400
        assert TrainingRun.objects.filter(status="running").count() == 0
    finally:
        log.close()
        print(
            "qcluster log (tail):", (tmp_path / "qcluster.log").read_text(errors="replace")[-4000:], sep="\n"
        )
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
