"""Several engine replicas behind the gateway: users stick to one, a dead replica's users move to the
other with no failed request, and the replica takes them back once it answers its health check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from django.conf import settings as django_settings
from django.utils import timezone

from appliance.engine_secret import engine_auth_headers
from appliance.processes import wait_http
from tests.conftest import child_env
from tests.inference.conftest import free_port


def test_rendezvous_moves_only_the_lost_replicas_users():
    from inference.api.engine_client import replica_order

    three = [("10.0.0.1", 8765), ("10.0.0.2", 8765), ("10.0.0.3", 8765)]
    users = [f"user-{i}" for i in range(300)]
    first = {u: replica_order(u, three)[0] for u in users}
    assert len(set(first.values())) == 3 and min(list(first.values()).count(r) for r in three) > 50
    survivors = three[:2]
    for u in users:
        assert replica_order(u, survivors)[0] == (
            first[u] if first[u] in survivors else replica_order(u, three)[1]
        )


def _engine(port: int, settings, log) -> subprocess.Popen:
    args = [
        sys.executable,
        "manage.py",
        "inference_serve",
        "--port",
        str(port),
        "--threads",
        "1",
        "--slots",
        "2",
        "--ctx",
        "512",
        "--kv-cache-mb",
        "0",
        "--poll",
        "0.5",
    ]
    return subprocess.Popen(
        args,
        cwd=django_settings.BASE_DIR,
        env=child_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _served(port: int) -> dict:
    return (
        requests.get(f"http://127.0.0.1:{port}/health", headers=engine_auth_headers(), timeout=5).json()[
            "batches"
        ]
        or {}
    )


@pytest.mark.django_db(transaction=True)
def test_killing_a_replica_fails_no_request(micro_base, live_server, settings, tmp_path):
    from inference.auth import token_create

    ports = [free_port(), free_port()]
    log = (tmp_path / "engines.log").open("wb")
    procs = {p: _engine(p, settings, log) for p in ports}
    try:
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/ready", timeout=120, headers=engine_auth_headers())
        settings.HEARTH_ENGINE_URLS = [f"http://127.0.0.1:{p}" for p in ports]
        settings.HEARTH_ENGINE_RETRY_S = 0.5
        tokens = {name: token_create(username=name)[1] for name in ("ana", "bo", "cy", "dee", "eve", "fin")}

        def ask(raw: str) -> int:
            body = {"prompt": "def parse(text):\n    ", "max_tokens": 4}
            return requests.post(
                f"{live_server.url}/v1/completions",
                json=body,
                timeout=60,
                headers={"Authorization": f"Bearer {raw}"},
            ).status_code

        assert [ask(raw) for raw in tokens.values()] == [200] * len(tokens)
        busy = [_served(p) for p in ports]
        assert all(busy), f"both replicas should have served someone: {busy}"

        dead = ports[0]
        os.killpg(procs[dead].pid, signal.SIGKILL)
        procs[dead].wait(timeout=10)
        failed = sum(ask(raw) != 200 for _ in range(3) for raw in tokens.values())
        assert failed == 0

        procs[dead] = _engine(dead, settings, log)  # back on the same address
        wait_http(f"http://127.0.0.1:{dead}/ready", timeout=120, headers=engine_auth_headers())

        time.sleep(settings.HEARTH_ENGINE_RETRY_S)
        assert [ask(raw) for raw in tokens.values()] == [200] * len(tokens)
        assert _served(dead), "the replica did not take its users back after its health check"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
        log.close()


@pytest.mark.django_db
def test_one_replica_at_a_time_holds_the_swap_turn():
    from inference.engine.rolling import swap_turn, swap_turn_give, swap_turn_holder, swap_turn_take
    from inference.models import EngineSwapTurn

    assert swap_turn_holder() == ""
    assert swap_turn_take("engine-a:8765")
    assert not swap_turn_take("engine-b:8765")  # a's swap is not done
    assert swap_turn_take("engine-a:8765")  # a renews its own turn
    swap_turn_give("engine-b:8765")  # not b's to give
    assert swap_turn_holder() == "engine-a:8765"
    # a died mid-load: its turn runs out and b gets it
    EngineSwapTurn.objects.filter(pk=1).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert swap_turn_holder() == ""
    with swap_turn("engine-b:8765") as mine:
        assert mine and swap_turn_holder() == "engine-b:8765"
        with swap_turn("engine-a:8765") as theirs:
            assert not theirs
    assert swap_turn_holder() == ""  # given back on the way out


def _slow_loads(monkeypatch) -> list[tuple[str, float, float]]:
    """From now on each model load takes a second more, as a real model's does; returns the list of
    (thread, started, done) each load appends to."""
    import threading

    from inference.engine import server

    loads: list[tuple[str, float, float]] = []
    real_load = server.pool_load

    def slow_load(served, **kwargs):
        started = time.monotonic()
        time.sleep(1.0)
        pool = real_load(served, **kwargs)
        loads.append((threading.current_thread().name, started, time.monotonic()))
        return pool

    monkeypatch.setattr(server, "pool_load", slow_load)
    return loads


@pytest.mark.django_db(transaction=True)
def test_a_promotion_rolls_through_the_replicas_one_at_a_time(micro_base, tmp_path, monkeypatch):
    """Two engine replicas poll the same database; each loads the promoted model in its own turn, the
    other serving the old model meanwhile."""
    import shutil
    import threading

    from inference.engine.server import Engine
    from tests.inference.conftest import model_version_make
    from trainer.versions import model_version_promote

    engines = [Engine(n_ctx=256, n_threads=1, slots=1, poll_s=0.1, name=f"replica-{i}") for i in range(2)]
    watchers = []
    try:
        for engine in engines:
            engine.refresh()
            assert engine.health()["model"] == "hearth-micro-test"
        loads = _slow_loads(monkeypatch)
        for engine in engines:
            watchers.append(threading.Thread(target=engine.watch, name=engine.name, daemon=True))
            watchers[-1].start()
        gguf = shutil.copy(micro_base.gguf_path, tmp_path / "custom.gguf")
        version = model_version_promote(version=model_version_make(base=micro_base, gguf_path=str(gguf)))
        waited = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = [engine.health() for engine in engines]
            waited |= {h["swap_waiting_for"] for h in health if h["swap_waiting_for"]}
            if all(h["model"] == f"hearth-v{version.pk}" for h in health):
                break
            time.sleep(0.05)
        assert [h["model"] for h in health] == [f"hearth-v{version.pk}"] * 2
        assert sorted(name for name, _, _ in loads) == ["replica-0", "replica-1"]
        (_, _, first_done), (_, second_started, _) = sorted(loads, key=lambda load: load[1])
        assert second_started >= first_done, f"the two replicas loaded at once: {loads}"
        # The second one said whom it waited for ("another replica" if the turn ended as it asked).
        assert waited & {"replica-0", "replica-1"} and waited <= {"replica-0", "replica-1", "another replica"}
    finally:
        for engine in engines:
            engine.stop()
        for watcher in watchers:
            watcher.join(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_replicas_load_a_canary_in_turn_and_promote_it_without_a_second_load(
    micro_base, tmp_path, monkeypatch
):
    """With two models served at once, the replicas still take turns: each loads the canary in its own
    turn; promoting the canary then hands each replica's canary slots to the served side, no load."""
    import shutil
    import threading
    from dataclasses import replace

    from appliance.llm.sampling import SamplingOptions
    from inference.engine.request import EngineRequest
    from inference.engine.server import Engine
    from tests.inference.conftest import model_version_make
    from trainer.versions import model_version_canary_start, model_version_promote

    engines = [Engine(n_ctx=256, n_threads=1, slots=1, poll_s=0.1, name=f"replica-{i}") for i in range(2)]
    watchers = []

    def settle(check, what):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(check(engine.health()) for engine in engines):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {[e.health() for e in engines]}")

    try:
        for engine in engines:
            engine.refresh()
        loads = _slow_loads(monkeypatch)
        for engine in engines:
            watchers.append(threading.Thread(target=engine.watch, name=engine.name, daemon=True))
            watchers[-1].start()
        gguf = shutil.copy(micro_base.gguf_path, tmp_path / "custom.gguf")
        version = model_version_make(base=micro_base, gguf_path=str(gguf))
        model_version_canary_start(version=version, percent=25)
        settle(lambda h: (h["canary"] or {}).get("model") == f"hearth-v{version.pk}", "the canary")
        (_, _, first_done), (_, second_started, _) = sorted(loads, key=lambda load: load[1])
        assert second_started >= first_done, f"the two replicas loaded the canary at once: {loads}"
        for engine in engines:  # both models answer, each its own share
            ask = EngineRequest(
                user="u", prefix="def f():\n    return ", sampling=SamplingOptions(max_tokens=2)
            )
            assert engine.complete(ask).version is None
            assert engine.complete(replace(ask, canary=True)).version == version.pk

        model_version_promote(version=version)
        settle(lambda h: h["version"] == version.pk and h["canary"] is None, "the promotion")
        assert len(loads) == 2  # the canary's slots became the served ones: nothing loaded again
    finally:
        for engine in engines:
            engine.stop()
        for watcher in watchers:
            watcher.join(timeout=10)
