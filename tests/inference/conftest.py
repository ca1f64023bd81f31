"""A live Hearth for API tests: the real engine (micro model, 2 slots) in a thread + live_server."""

from __future__ import annotations

import socket
import threading

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cancel_after(n: int) -> tuple[threading.Event, list[str]]:
    """A cancel event set by the returned `on_token`'s n-th call, and the texts it saw."""
    cancel, seen = threading.Event(), []

    def on_token(text: str) -> None:
        seen.append(text)
        if len(seen) == n:
            cancel.set()

    return cancel, on_token


@pytest.fixture(autouse=True)
def _inline_writes(settings):
    """Bookkeeping writes inline: a background writer cannot see a test's uncommitted rows."""
    settings.HEARTH_DEFERRED_WRITES = False


@pytest.fixture
def engine_live(micro_base, settings):
    from inference.engine.server import engine_server_build
    from inference.policy import serving_rules_clear

    settings.HEARTH_ENGINE_PORT = free_port()
    settings.HEARTH_POLICY_CACHE_S = 0  # tests change the policy and expect it to apply at once
    serving_rules_clear()
    server, engine = engine_server_build(
        host="127.0.0.1", port=settings.HEARTH_ENGINE_PORT, n_ctx=512, n_threads=1, slots=2, poll_s=0.2
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield engine
    server.shutdown()
    server.server_close()
    engine.stop()
    serving_rules_clear()


@pytest.fixture
def hearth(live_server, engine_live) -> str:
    """Base URL of a live Hearth whose engine serves the micro model."""
    return live_server.url


@pytest.fixture
def raw_token(db) -> str:
    from inference.auth import token_create

    return token_create(username="dev")[1]


def model_version_make(*, base, gguf_path: str):
    """A promotable ModelVersion row pointing at `gguf_path` (no training needed)."""
    from trainer.models import Dataset, ModelVersion, TrainingRun

    dataset = Dataset.objects.create(status=Dataset.Status.READY)
    run = TrainingRun.objects.create(base=base, dataset=dataset, status=TrainingRun.Status.SUCCEEDED)
    return ModelVersion.objects.create(
        base=base,
        run=run,
        gguf_path=gguf_path,
        fim_format=base.fim_format,
        status=ModelVersion.Status.CANDIDATE,
        gate_passed=True,
    )
