"""Start and stop Hearth's own servers (qcluster, engine, web) as child processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from appliance import paths


def manage_command(*args: str) -> list[str]:
    """A management command in a child process; works from a checkout and from an installed wheel
    (no manage.py there), with the settings module this process uses."""
    return [
        sys.executable,
        "-m",
        "django",
        *args,
        "--settings",
        os.environ.get("DJANGO_SETTINGS_MODULE", "appliance.settings"),
    ]


def gunicorn_command(port: int | None = None, *, unix_socket: str | None = None) -> list[str]:
    """gunicorn serving the web tier: on `unix_socket` behind Hearth's front (`web_serve`, the way
    `serve` and the hearth-web unit run it), or alone on HEARTH_WEB_BIND:`port`, then serving HTTPS
    itself when a certificate is set (a second web tier in a benchmark; slow clients stall it)."""
    if unix_socket:
        app, bind = "appliance.wsgi:front_application", f"unix:{unix_socket}"
    else:
        host = settings.HEARTH_WEB_BIND
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        app, bind = "appliance.wsgi:application", f"{host}:{port}"
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--bind",
        bind,
        "--workers",
        "2",
        "--threads",
        "8",
        "--timeout",
        "300",
        "--graceful-timeout",
        "5",
        # A kept connection is reused between requests (the front's, or an IDE's between keystrokes):
        # at gunicorn's default (2 s) one was closed as the client sent on it, and that request failed.
        "--keep-alive",
        "75",
        # No gunicornc control socket (one path per user, so a second web tier took the first's).
        "--no-control-socket",
    ]
    if unix_socket:
        return args
    if settings.HEARTH_TLS_CERT and settings.HEARTH_TLS_KEY:
        args += ["--certfile", settings.HEARTH_TLS_CERT, "--keyfile", settings.HEARTH_TLS_KEY]
    if settings.HEARTH_BEHIND_PROXY:
        args += ["--forwarded-allow-ips", "*"]
    return args


def web_serve(port: int) -> None:
    """The web tier until SIGTERM or SIGINT: Hearth's front (appliance.proxy) on HEARTH_WEB_BIND:`port`,
    TLS there when a certificate is set, relaying whole requests to gunicorn on a unix socket in a
    private directory. gunicorn runs in this process group, so stopping the group stops both."""
    from appliance.proxy import front_run, listen, tls_context

    sock = listen(settings.HEARTH_WEB_BIND, port)  # first: a port in use fails before gunicorn starts
    tls = None
    if settings.HEARTH_TLS_CERT and settings.HEARTH_TLS_KEY:
        tls = tls_context(settings.HEARTH_TLS_CERT, settings.HEARTH_TLS_KEY)
    private = Path(tempfile.mkdtemp(prefix="hearth-web-"))
    upstream = str(private / "gunicorn.sock")
    gunicorn = subprocess.Popen(gunicorn_command(unix_socket=upstream), cwd=settings.BASE_DIR)
    signalled = False
    try:
        signalled = front_run(
            sock=sock,
            upstream=upstream,
            tls=tls,
            trust_forwarded=settings.HEARTH_BEHIND_PROXY,
            alive=lambda: gunicorn.poll() is None,
        )
    finally:
        sock.close()
        died = gunicorn.poll()
        if died is None:
            gunicorn.terminate()
            try:
                gunicorn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
                gunicorn.wait()
        shutil.rmtree(private, ignore_errors=True)
    if died is not None and not signalled:  # a stop signal reaches gunicorn too: its exit is expected
        raise RuntimeError(f"gunicorn exited with code {died}")


def web_url(port: int) -> str:
    """How this host reaches its own web tier (loopback when bound to all addresses)."""
    scheme = "https" if settings.HEARTH_TLS_CERT and settings.HEARTH_TLS_KEY else "http"
    bind = settings.HEARTH_WEB_BIND
    host = "127.0.0.1" if bind in ("0.0.0.0", "", "::") or bind.startswith("127.") else bind
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def sigterm_as_interrupt() -> None:
    """Handle SIGTERM (systemd, kill) like Ctrl-C, so the children are stopped, not orphaned on their ports."""

    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the shutdown short
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


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

    def start_qcluster(self, *, alone: bool = False) -> None:
        """The job worker; with a GPU queue configured, a second one that takes only training jobs.
        `alone`: nothing else runs on this box meanwhile (the demo trains before it serves), so the
        worker takes every core instead of its own set."""
        from appliance.cpusets import cpu_env

        cpus = {**cpu_env(), **({"HEARTH_WORKER_CPUS": "all"} if alone else {})}
        self.start("qcluster", manage_command("qcluster"), env={"HEARTH_WORKER_GPU": "0", **cpus})
        if settings.HEARTH_GPU_QUEUE:
            self.start("qcluster-gpu", manage_command("qcluster"), env={"HEARTH_WORKER_GPU": "1", **cpus})

    def start_engine(self) -> None:
        from appliance.cpusets import cpu_env

        self.start("engine", manage_command("inference_serve"), env=cpu_env())

    def start_web(self, port: int) -> subprocess.Popen:
        """The web tier as the hearth-web unit runs it: `web` (Hearth's front, then gunicorn)."""
        return self.start("web", manage_command("web", "--port", str(port)))

    def stop_one(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop one child (its whole process group) with `sig`, forget it and return its exit code;
        one that outlives `timeout` is SIGKILLed."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()

    def stop(self) -> None:
        # Stopping already: a SIGTERM now must not cut the shutdown short and orphan a child.
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN) if threading_is_main() else None
        try:
            self._stop()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _stop(self) -> None:
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


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def engine_wait(*, timeout: float, accept=lambda payload: True, services: Services | None = None) -> dict:
    """Wait for the engine's /health (asked with the instance's shared secret) to satisfy `accept`."""
    from appliance.engine_secret import engine_auth_headers

    url = f"http://{settings.HEARTH_ENGINE_HOST}:{settings.HEARTH_ENGINE_PORT}/health"
    return wait_http(url, timeout=timeout, accept=accept, services=services, headers=engine_auth_headers())


def wait_http(
    url: str,
    *,
    timeout: float,
    accept=lambda payload: True,
    services: Services | None = None,
    headers: dict | None = None,
) -> dict:
    """Poll `url` until it answers 2xx with a payload `accept` likes. An https URL is our own web
    tier on loopback, possibly with a self-signed certificate: it is not verified."""
    context = None
    if url.startswith("https:"):
        import ssl

        context = ssl._create_unverified_context()
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if services is not None:
            services.check_alive()
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=5, context=context) as resp:
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
