"""The whole chain on the micro model: git repo → dataset → LoRA steps → GGUF → engine → HTTP."""

from __future__ import annotations

import socket
import threading

import pytest
import requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stage_manifests_chain(run) -> None:
    """Each stage's manifest names the one before it by sha256; paths are stored relative to the home."""
    import json
    from pathlib import Path

    from appliance.paths import sha256_file
    from trainer.models import EvaluationReport, TrainingRun

    dataset_manifest = Path(run.dataset.path) / "manifest.json"
    training = json.loads((Path(run.path) / "manifest.json").read_text())
    assert training["stage"] == "training" and training["inputs"]["dataset_manifest"] == sha256_file(
        dataset_manifest
    )
    assert training["adapter"] and "torch" in training["libraries"]
    report = EvaluationReport.objects.filter(version__run=run).first()
    assert report.status == "done" and report.log
    evaluation = json.loads(
        (
            Path(run.path).parent.parent / "evaluations" / f"evaluation-{report.pk:05d}" / "manifest.json"
        ).read_text()
    )
    assert evaluation["inputs"]["dataset_manifest"] == sha256_file(dataset_manifest)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT path FROM {TrainingRun._meta.db_table} WHERE id = %s", [run.pk])
        stored = cursor.fetchone()[0]
    assert not stored.startswith("/") and run.path.endswith(stored)  # relative to HEARTH_HOME


@pytest.mark.django_db(transaction=True)
def test_repository_to_served_completion(code_repo, micro_base, live_server, settings):
    from inference.auth import token_create
    from inference.engine.server import engine_server_build
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.models import ModelVersion, TrainingRun
    from trainer.training.config import LoraSettings
    from trainer.training.services import training_run_start

    repo = repository_register(source=str(code_repo))
    assert repo.default_branch == "main" and len(repo.head_sha) == 40
    dataset = dataset_build(repositories=[repo])
    assert dataset.status == "ready" and dataset.heldout_files >= 1
    assert (
        dataset.report["skipped"].get("binary", 0) + dataset.report["skipped"].get("language-unknown", 0) >= 1
    )

    settings_ = LoraSettings(max_steps=4, seq_len=128, grad_accum=1, eval_sequences=4, warmup_steps=1)
    run = training_run_start(dataset=dataset, base=micro_base, settings=settings_)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.status_reason
    assert run.progress.count() >= 1 and run.method in {"full-fp32", "full-bf16", "lora-bf16", "lora-fp32"}
    version = ModelVersion.objects.get(run=run)
    assert version.status in {"candidate", "promoted"}, version.status_reason
    report = version.reports.get()
    assert report.mode == "fim"  # both the micro base and the candidate can infill
    assert set(report.metrics["models"]) == {"base", "candidate"}
    scores = report.scores
    assert list(scores.arms) == ["base", "base+context", "tuned", "tuned+context"]  # paired, same lines
    assert len({scores.arm(a).tasks for a in scores.arms}) == 1
    assert version.served_arm == scores.best_arm("tuned") and f"({version.served_arm})" in report.decision
    assert version.manifest["gguf"]["model-q8_0.gguf"] == version.gguf_sha256
    fim_ids = version.manifest["fim_token_ids"]  # the ids written into the GGUF, one per FIM role
    assert {"prefix", "suffix", "middle"} <= set(fim_ids) and len(set(fim_ids.values())) == len(fim_ids)
    assert version.manifest["top1_agreement"]["tokens"] > len(fim_ids)
    _stage_manifests_chain(run)

    # Serve whatever the gate decided (promoted version, or the base), over real HTTP.
    settings.HEARTH_ENGINE_PORT = _free_port()
    server, engine = engine_server_build(
        host="127.0.0.1", port=settings.HEARTH_ENGINE_PORT, n_ctx=512, n_threads=2
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _, raw = token_create(username="dev")
        url = f"{live_server.url}/v1/completions"
        body = {"prompt": "def parse(text):\n    ", "suffix": "\n    return result\n", "max_tokens": 8}
        ok = requests.post(url, json=body, headers={"Authorization": f"Bearer {raw}"}, timeout=60)
        assert ok.status_code == 200, ok.text
        payload = ok.json()
        assert payload["object"] == "text_completion" and isinstance(payload["choices"][0]["text"], str)
        assert payload["usage"]["completion_tokens"] >= 0

        bad = requests.post(url, json=body, headers={"Authorization": "Bearer hth_nope"}, timeout=10)
        assert bad.status_code == 401 and bad.json()["error"]["message"] == "Invalid token."
        missing = requests.post(url, json=body, timeout=10)
        assert missing.status_code == 401
        malformed = requests.post(
            url, data=b"{not json", headers={"Authorization": f"Bearer {raw}"}, timeout=10
        )
        assert malformed.status_code == 400 and "JSON" in malformed.json()["error"]["message"]
        wrong_type = requests.post(
            url,
            json={"prompt": "x", "max_tokens": "many"},
            headers={"Authorization": f"Bearer {raw}"},
            timeout=10,
        )
        assert wrong_type.status_code == 400 and wrong_type.json()["error"]["param"] == "max_tokens"
        _other_dialects(live_server.url, raw)
    finally:
        server.shutdown()
        server.server_close()
        engine.stop()  # its watcher would poll a database this test no longer holds


def _other_dialects(base: str, raw: str) -> None:
    """The official openai client (FIM + streaming), llama.cpp's /infill and /completion, Tabby."""
    from openai import OpenAI

    auth = {"Authorization": f"Bearer {raw}"}
    client = OpenAI(base_url=f"{base}/v1", api_key=raw, max_retries=0, timeout=60)
    model = client.models.list().data[0].id
    done = client.completions.create(model=model, prompt="def add(a, b):\n", suffix="\n", max_tokens=6)
    assert done.choices[0].finish_reason in {"stop", "length"}
    chunks = list(client.completions.create(model=model, prompt="import os\n", max_tokens=6, stream=True))
    assert chunks and chunks[-1].choices[0].finish_reason in {"stop", "length"}

    infill = requests.post(
        f"{base}/infill",
        headers=auth,
        timeout=60,
        json={
            "input_prefix": "def f(x):\n",
            "prompt": "    ",
            "input_suffix": "\n",
            "n_predict": 8,
            "input_extra": [{"filename": "util.py", "text": "def g():\n    pass\n"}],
            "cache_prompt": True,
        },
    )
    assert infill.status_code == 200, infill.text
    assert {"content", "stop", "stop_type", "timings", "tokens_predicted"} <= set(infill.json())
    completion = requests.post(
        f"{base}/completion", headers=auth, json={"prompt": "x = ", "n_predict": 4}, timeout=60
    )
    assert completion.status_code == 200 and "content" in completion.json()

    tabby = requests.post(
        f"{base}/v1/completions",
        headers=auth,
        timeout=60,
        json={
            "language": "python",
            "segments": {"prefix": "def f():\n    ", "suffix": "\n", "filepath": "a.py"},
        },
    )
    assert tabby.status_code == 200 and tabby.json()["choices"][0]["index"] == 0
    event = requests.post(
        f"{base}/v1/events", headers=auth, json={"type": "view", "completion_id": "c"}, timeout=10
    )
    assert event.status_code == 200
    health = requests.get(f"{base}/v1/health", headers=auth, timeout=10)
    assert health.status_code == 200 and health.json()["model"]
