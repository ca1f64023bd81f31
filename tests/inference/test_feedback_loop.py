"""The feedback loop, whole, on the micro model: a candidate tried on a share of developers through
the real API and the real engine, their accept events compared on the dashboard (the significance
check run as a job by a real qcluster), then a fine-tune started by the admin that learns from the
completions they accepted, built and trained by that qcluster."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html import unescape

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from tests.conftest import child_env
from tests.inference.conftest import model_version_make
from tests.inference.test_canary import developers
from tests.inference.test_feedback import TINY, Ide

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(check, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the qcluster exited while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


@pytest.fixture
def qcluster(settings, tmp_path, monkeypatch):
    from django_q.conf import Conf

    log = (tmp_path / "qcluster.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=django_settings.BASE_DIR,
        env=child_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    monkeypatch.setattr(Conf, "SYNC", False)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print("qcluster log (tail):", (tmp_path / "qcluster.log").read_text(errors="replace")[-3000:], sep="\n")


def test_canary_comparison_then_a_run_that_learns_from_accepted_code(
    hearth, engine_live, qcluster, code_repo, micro_base, admin_client, tmp_path
):
    from appliance.jobs import job_enqueue
    from appliance.models import Notification
    from inference.models import CompletionRecord, ServingPolicy
    from trainer.datasets.builder import DatasetOptions
    from trainer.mirrors.services import repository_register
    from trainer.models import TrainingRun
    from trainer.pipeline import training_start
    from trainer.training.config import LoraSettings

    ServingPolicy.objects.update_or_create(
        pk=1, defaults={"telemetry_enabled": True, "telemetry_content": True}
    )
    gguf = tmp_path / "candidate.gguf"
    shutil.copy(micro_base.gguf_path, gguf)
    candidate = model_version_make(base=micro_base, gguf_path=str(gguf))

    # The admin tries the candidate on half of the developers, from its canary page.
    page = reverse("admin:trainer_modelversion_canary", args=[candidate.pk])
    assert admin_client.post(page, {"percent": "50", "start": "1"}).status_code == 302
    _wait(lambda: (engine_live.health()["canary"] or {}).get("model"), 60, "the engine to load the canary")

    # Developers complete code in their IDEs: those in the canary accept everything, the others nothing.
    inside, outside = developers(2, candidate.pk, 50)
    for n, token in enumerate(inside + outside):
        ide = Ide(hearth, token)
        for i in range(3):
            prefix = f"def scale_{n}_{i}(values, factor):\n    out = []\n    for value in values:\n        "
            cid = ide.complete(f"/home/dev{n}/proj/src/scale_{i}.py", prefix, "\n    return out\n")
            ide.event("view", cid)
            if token in inside:
                ide.event("select", cid)
    arms = CompletionRecord.objects.values_list("arm", "model_version")
    assert sorted(set(arms)) == [("canary", candidate.pk), ("served", None)]

    # The scheduled check, run by the qcluster, tells the admins once the difference is significant.
    job_enqueue("inference.tasks.canary_check_task")
    note = _wait(
        lambda: Notification.objects.filter(title__startswith=f"Canary version {candidate.pk}").first(),
        120,
        "the canary check's notification",
        qcluster,
    )
    assert "accept its suggestions more" in note.title and "6 of 6 shown accepted" in note.body
    dashboard = _text(admin_client.get(reverse("admin:index")).content.decode())
    assert f"Canary: version {candidate.pk} for 50% of developers" in dashboard
    assert "Better: developers accept the canary's suggestions significantly more" in dashboard
    assert "canary: version" in dashboard and "100% (61%–100%)" in dashboard  # 6 of 6, with its interval
    assert "no events reported" not in dashboard

    # The admin starts the next model with the accepted completions; the qcluster builds and trains it.
    repo = repository_register(source=str(code_repo))
    run = training_start(
        repositories=[repo],
        base=micro_base,
        settings=LoraSettings(**TINY),
        options=DatasetOptions(accepted_completions=True),
        actor="admin",
    )

    def trained():
        run.refresh_from_db()
        if run.status == TrainingRun.Status.FAILED:
            raise AssertionError(f"the run failed: {run.status_reason}\n{run.log}")
        return run.status == TrainingRun.Status.SUCCEEDED

    _wait(trained, 600, "the run to finish", qcluster)
    assert run.summary["accepted_completions"] == 6 and run.summary["accepted_developers"] == 2
    assert run.dataset.report["accepted"]["kept"] == 6
    live = _text(
        admin_client.get(reverse("admin:trainer_trainingrun_change", args=[run.pk])).content.decode()
    )
    assert "used 6 accepted completions from 2 developers" in live
