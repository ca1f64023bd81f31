"""The services a command starts: one of them stopped on its own, with its whole process group."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from appliance.processes import Services

# A child that starts a grandchild in its process group and ignores SIGTERM when told to.
CHILD = """
import signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(grandchild.pid, flush=True)
time.sleep(60)
"""


def _grandchild(name: str) -> int:
    from appliance import paths

    log = paths.logs_dir() / f"{name}.log"
    for _ in range(100):
        text = log.read_text().strip() if log.exists() else ""
        if text:
            return int(text.splitlines()[-1])
        time.sleep(0.05)
    raise AssertionError(f"{name} did not start its grandchild")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] == "Z"  # exited, waiting for its parent to reap it


@pytest.mark.parametrize(
    ("mode", "sig", "code"),
    [
        ("polite", signal.SIGTERM, -signal.SIGTERM),
        ("polite", signal.SIGKILL, -signal.SIGKILL),
        ("stubborn", signal.SIGTERM, -signal.SIGKILL),
    ],
)
def test_stop_one_stops_that_service_and_its_children_only(mode, sig, code):
    from appliance import paths

    services = Services()
    try:
        for name in ("victim", "bystander"):
            (paths.logs_dir() / f"{name}.log").unlink(missing_ok=True)  # logs are appended to
            services.start(name, [sys.executable, "-c", CHILD, mode])
        grandchild = _grandchild("victim")
        assert services.stop_one("victim", sig=sig, timeout=1.0) == code
        assert list(services.procs) == ["bystander"]
        for _ in range(50):
            if _gone(grandchild):
                break
            time.sleep(0.05)
        assert _gone(grandchild), "the stopped service's child outlived it"
        assert services.procs["bystander"].poll() is None
    finally:
        for name in list(services.procs):
            services.stop_one(name, sig=signal.SIGKILL)


def process_group(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (zombies waiting to be reaped are gone already)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.django_db(transaction=True)
def test_the_web_tier_exits_whole_when_gunicorn_dies(settings, monkeypatch):
    """`web` is Hearth's front with gunicorn as its child, in one process group (so that stopping the
    service stops all of it: tests/appliance/test_slow_clients.py checks that). A gunicorn that dies
    takes the front down with it, so that `serve` and systemd see the web tier fail instead of a port
    that answers 503 for ever."""
    from appliance import paths
    from appliance.processes import wait_http
    from tests.conftest import child_env
    from tests.inference.conftest import free_port

    env = child_env(settings)
    for name in ("HEARTH_HOME", "HEARTH_DATABASE"):
        monkeypatch.setenv(name, env[name])
    (paths.logs_dir() / "web.log").unlink(missing_ok=True)
    services = Services()
    try:
        port = free_port()
        web = services.start_web(port)
        wait_http(f"http://127.0.0.1:{port}/admin/login/", timeout=60, services=services)
        members = process_group(web.pid)
        assert len(members) >= 4, members  # the front, gunicorn's arbiter and its two workers
        os.kill(next(p for p in members if _parent(p) == web.pid), signal.SIGKILL)
        assert web.wait(timeout=15) != 0
        assert "gunicorn exited" in (paths.logs_dir() / "web.log").read_text()
        assert _wait_for(lambda: not process_group(web.pid), 15), f"left: {process_group(web.pid)}"
    finally:
        for name in list(services.procs):
            services.stop_one(name, sig=signal.SIGKILL)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
