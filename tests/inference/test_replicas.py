"""Several engine replicas behind the gateway: users stick to one, a dead replica's users move to the
other with no failed request, and the replica takes them back once it answers its health check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from django.conf import settings as django_settings

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
