"""Policies on a live Hearth: exclusion, filters, telemetry, flow logs, hot swap and fallback."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
import requests

from tests.inference.conftest import model_version_make

pytestmark = pytest.mark.django_db(transaction=True)


def _policy(**fields):
    from inference.models import ServingPolicy

    ServingPolicy.objects.update_or_create(pk=1, defaults=fields)


def test_excluded_files_get_no_completion_and_are_never_context(hearth, raw_token, engine_live):
    from inference.models import FlowLog

    _policy(exclusion_globs="**/secrets/**\n*.pem", flow_logs_enabled=True)
    auth = {"Authorization": f"Bearer {raw_token}"}
    before = engine_live.scheduler.stats["requests"]
    r = requests.post(
        f"{hearth}/v1/completions",
        headers=auth,
        timeout=60,
        json={
            "language": "python",
            "segments": {"prefix": "KEY = ", "suffix": "\n", "filepath": "app/secrets/keys.py"},
        },
    )
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == ""
    assert engine_live.scheduler.stats["requests"] == before  # the engine never saw it
    r = requests.post(
        f"{hearth}/infill",
        headers=auth,
        timeout=60,
        json={
            "input_prefix": "x = ",
            "input_suffix": "\n",
            "n_predict": 4,
            "input_extra": [
                {"filename": "certs/server.pem", "text": "-----BEGIN CERTIFICATE-----\nabc\n"},
                {"filename": "util.py", "text": "def f():\n    pass\n"},
            ],
        },
    )
    assert r.status_code == 200
    log = FlowLog.objects.filter(path="/infill").latest("created_at")
    exclusion = next(s for s in log.steps if s["step"] == "exclusion")
    assert exclusion == {**exclusion, "context_files": 2, "context_dropped": 1}
    assert log.status_code == 200 and any(s["step"] == "engine" for s in log.steps)


def test_verbatim_filter_discards_a_blocked_suggestion_and_counts(hearth, raw_token):
    from inference.models import BlockedCode, FilterCount

    auth = {"Authorization": f"Bearer {raw_token}"}
    body = {"prompt": "class Parser:\n    def parse(self, text):\n", "n_predict": 200}
    first = requests.post(f"{hearth}/completion", headers=auth, json=body, timeout=60).json()
    suggestion = first["content"]
    assert len("".join(suggestion.split())) >= 150, "the micro model should ramble on for 200 tokens"
    BlockedCode.objects.create(name="vendor/blocked.py", text="# header\n" + suggestion + "\n# footer\n")
    second = requests.post(f"{hearth}/completion", headers=auth, json=body, timeout=60).json()
    assert second["content"] == "" and second["stop_type"] == "none"
    assert FilterCount.objects.get(name="verbatim").count == 1


def test_telemetry_switch_records_events_snapshots_and_usage(hearth, raw_token):
    from inference.models import CodeSnapshot, CompletionEvent, CompletionRecord
    from inference.selectors import usage_summary
    from inference.telemetry import telemetry_purge

    auth = {"Authorization": f"Bearer {raw_token}"}
    tabby = {
        "language": "python",
        "segments": {"prefix": "def f():\n    ", "suffix": "\n", "filepath": "a.py"},
    }
    requests.post(f"{hearth}/v1/completions", headers=auth, json=tabby, timeout=60)
    assert CompletionRecord.objects.count() == 0  # telemetry is off by default

    _policy(telemetry_enabled=True, telemetry_content=False)
    cid = requests.post(f"{hearth}/v1/completions", headers=auth, json=tabby, timeout=60).json()["id"]
    for kind in ("view", "select"):
        r = requests.post(
            f"{hearth}/v1/events",
            headers=auth,
            timeout=10,
            json={"type": kind, "completion_id": cid, "choice_index": 0, "view_id": "v1"},
        )
        assert r.status_code == 200
    snap = requests.post(
        f"{hearth}/v1/telemetry/snapshots",
        headers=auth,
        timeout=10,
        json={"completion_id": cid, "text": "def f():\n    return 1\n", "filepath": "a.py"},
    )
    assert snap.json() == {"stored": False}  # content not allowed
    record = CompletionRecord.objects.get(completion_id=cid)
    assert record.language == "python" and record.model == "hearth-micro-test" and record.prompt == ""
    assert record.dialect == "tabby" and record.latency_ms > 0

    _policy(telemetry_enabled=True, telemetry_content=True)
    r = requests.post(
        f"{hearth}/v1/completions",
        headers=auth,
        timeout=60,
        json={"prompt": "import os\n", "max_tokens": 4, "filepath": "tool.go"},
    )
    latest = CompletionRecord.objects.get(completion_id=r.json()["id"])
    assert latest.prompt == "import os\n" and latest.language == "go"
    snap = requests.post(
        f"{hearth}/v1/telemetry/snapshots",
        headers=auth,
        timeout=10,
        json={"completion_id": cid, "text": "def f():\n    return 1\n", "elapsed_s": 30},
    )
    assert snap.json() == {"stored": True} and CodeSnapshot.objects.count() == 1

    usage = usage_summary()
    assert usage["overall"]["requests"] == 2 and usage["overall"]["acceptance_rate"] == 1.0
    assert usage["by_language"]["python"]["requests"] == 1 and usage["overall"]["latency_ms_p50"] > 0
    assert set(usage["by_model"]) == {"hearth-micro-test"}

    # Rolling retention: rows older than 28 days go, newer rows stay.
    from datetime import timedelta

    from django.utils import timezone

    CompletionRecord.objects.filter(completion_id=cid).update(created_at=timezone.now() - timedelta(days=29))
    CompletionEvent.objects.update(created_at=timezone.now() - timedelta(days=29))
    deleted = telemetry_purge()
    assert deleted["CompletionRecord"] == 1 and deleted["CompletionEvent"] == 2
    assert CompletionRecord.objects.count() == 1


def test_purge_is_scheduled_daily():
    import importlib

    from django.apps import apps
    from django_q.models import Schedule

    importlib.import_module("inference.migrations.0003_schedules").schedules_create(apps, None)
    schedule = Schedule.objects.get(name="hearth-telemetry-purge")
    assert (
        schedule.func == "inference.tasks.telemetry_purge_task" and schedule.schedule_type == Schedule.DAILY
    )


def test_promotion_hot_swaps_under_load_with_no_failed_request_then_falls_back(
    hearth, micro_base, engine_live, tmp_path
):
    from inference.auth import token_create
    from trainer.versions import model_version_promote

    tokens = [token_create(username=f"user{i}")[1] for i in range(4)]
    failures, answered, stop = [], [], threading.Event()

    def client(raw: str):
        while not stop.is_set():
            r = requests.post(
                f"{hearth}/v1/completions",
                headers={"Authorization": f"Bearer {raw}"},
                timeout=60,
                json={"prompt": "def main():\n    ", "max_tokens": 8},
            )
            (answered if r.status_code == 200 else failures).append(r.json().get("model") or r.text)

    threads = [threading.Thread(target=client, args=(raw,)) for raw in tokens]
    for t in threads:
        t.start()
    gguf = shutil.copy(micro_base.gguf_path, tmp_path / "custom.gguf")
    version = model_version_make(base=micro_base, gguf_path=str(gguf))
    model_version_promote(version=version)
    deadline = time.monotonic() + 20
    while engine_live.health()["model"] != f"hearth-v{version.pk}" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert {"hearth-micro-test", f"hearth-v{version.pk}"} <= set(answered)

    # A promoted model that cannot load: the engine keeps (or falls back to) the base model.
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\0" * 64)
    broken = model_version_make(base=micro_base, gguf_path=str(corrupt))
    model_version_promote(version=broken)
    deadline = time.monotonic() + 20
    while engine_live.health()["model"] != "hearth-micro-test" and time.monotonic() < deadline:
        time.sleep(0.05)
    health = engine_live.health()
    assert health["model"] == "hearth-micro-test" and engine_live.failed_version == broken.pk
    r = requests.post(
        f"{hearth}/v1/completions",
        headers={"Authorization": f"Bearer {tokens[0]}"},
        timeout=60,
        json={"prompt": "x", "max_tokens": 2},
    )
    assert r.status_code == 200 and r.json()["model"] == "hearth-micro-test"
    assert requests.get(f"{hearth}/ready", timeout=10).json()["ready"] is True


def test_deferred_writes_reach_the_database(hearth, raw_token, settings):
    """The default path: usage counts and telemetry are committed by the background writer."""
    from inference.models import ApiToken, CompletionRecord
    from inference.writer import deferred_flush

    settings.HEARTH_DEFERRED_WRITES = True
    _policy(telemetry_enabled=True)
    auth = {"Authorization": f"Bearer {raw_token}"}
    for _ in range(3):
        assert (
            requests.post(
                f"{hearth}/v1/completions", headers=auth, timeout=60, json={"prompt": "x = ", "max_tokens": 2}
            ).status_code
            == 200
        )
    assert deferred_flush()
    token = ApiToken.objects.get(digest=ApiToken.hash(raw_token))
    assert token.rate_count == 3 and token.last_used_at is not None
    assert CompletionRecord.objects.count() == 3
