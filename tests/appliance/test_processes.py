"""The services a command starts: one of them stopped on its own, with its whole process group."""

from __future__ import annotations

import os
import signal
import sys
import time

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
