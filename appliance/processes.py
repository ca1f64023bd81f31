"""Start and stop Hearth's own servers (qcluster, engine, web) as child processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from appliance import paths


@dataclass
class Services:
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (paths.logs_dir() / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args,
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_qcluster(self) -> None:
        """The job worker; with a GPU queue configured, a second one that takes only training jobs."""
        self.start("qcluster", [sys.executable, "manage.py", "qcluster"], env={"HEARTH_WORKER_GPU": "0"})
        if settings.HEARTH_GPU_QUEUE:
            self.start(
                "qcluster-gpu", [sys.executable, "manage.py", "qcluster"], env={"HEARTH_WORKER_GPU": "1"}
            )

    def start_engine(self) -> None:
        self.start("engine", [sys.executable, "manage.py", "inference_serve"])

    def start_web(self, port: int) -> None:
        self.start(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "appliance.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "8",
                "--timeout",
                "300",
                "--graceful-timeout",
                "5",
            ],
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()

    def wait_forever(self, poll_s: float = 2.0) -> None:
        """Block until Ctrl-C, failing loudly if a child dies."""
        try:
            while True:
                self.check_alive()
                time.sleep(poll_s)
        except KeyboardInterrupt:
            pass

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (paths.logs_dir() / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n" + "\n".join(tail))


def wait_http(
    url: str, *, timeout: float, accept=lambda payload: True, services: Services | None = None
) -> dict:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if services is not None:
            services.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read()
                payload = json.loads(body) if body.strip().startswith(b"{") else {}
                if accept(payload):
                    return payload
                last = str(payload)
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"{url} was not ready after {timeout:.0f} s ({last})")


def log_path(name: str) -> Path:
    return paths.logs_dir() / f"{name}.log"
