"""Real clients against a live Hearth (micro model): the official openai client, and request shapes
recorded from llama.vscode (/infill) and Continue (/v1/completions with suffix, /completion)."""

from __future__ import annotations

import json

import pytest
import requests

pytestmark = pytest.mark.django_db(transaction=True)


def _sse(resp: requests.Response) -> list:
    """The JSON payloads of an SSE response (and the literal [DONE] marker if present)."""
    out = []
    for line in resp.iter_lines(decode_unicode=True):
        if line and line.startswith("data: "):
            data = line.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_openai_client_fim_streaming_and_models(hearth, raw_token):
    from openai import OpenAI

    client = OpenAI(base_url=f"{hearth}/v1", api_key=raw_token, max_retries=0, timeout=60)
    model = client.models.list().data[0].id
    assert model == "hearth-micro-test"
    done = client.completions.create(
        model=model,
        prompt="def add(a, b):\n",
        suffix="\n\nprint(add(1, 2))\n",
        max_tokens=12,
        n=2,
        stop=["\n\n"],
    )
    assert len(done.choices) == 2 and done.choices[0].text == done.choices[1].text  # greedy: same text
    assert done.usage.prompt_tokens > 0
    streamed = list(
        client.completions.create(
            model=model,
            prompt="def add(a, b):\n",
            suffix="\n\nprint(add(1, 2))\n",
            max_tokens=12,
            stop=["\n\n"],
            stream=True,
        )
    )
    assert streamed[-1].choices[0].finish_reason in {"stop", "length"}
    assert "".join(c.choices[0].text for c in streamed) == done.choices[0].text


def test_llama_vscode_infill_shapes_and_prompt_cache(hearth, raw_token):
    auth = {"Authorization": f"Bearer {raw_token}"}
    chunks = [{"text": "def helper(x):\n    return x * 2\n", "time": 1700000000, "filename": "src/util.py"}]
    # llama.vscode first warms the cache with the extra context only (n_predict 0, t_max_predict_ms 1).
    warm = requests.post(
        f"{hearth}/infill",
        headers=auth,
        timeout=60,
        json={
            "input_prefix": "",
            "input_suffix": "",
            "input_extra": chunks,
            "prompt": "",
            "n_predict": 0,
            "samplers": [],
            "cache_prompt": True,
            "t_max_prompt_ms": 500,
            "t_max_predict_ms": 1,
        },
    )
    assert warm.status_code == 200 and warm.json()["content"] == "" and warm.json()["tokens_predicted"] == 0
    prefix = "import os\n\n\ndef main(argv):\n    path = os.path.join(argv[0], 'x')\n"
    body = {
        "input_prefix": prefix,
        "input_suffix": "\n    return path\n",
        "input_extra": chunks,
        "prompt": "    ",
        "n_predict": 16,
        "top_k": 40,
        "top_p": 0.99,
        "stream": False,
        "samplers": ["top_k", "top_p", "infill"],
        "cache_prompt": True,
        "n_indent": 4,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 1000,
    }
    first = requests.post(f"{hearth}/infill", headers=auth, json=body, timeout=60)
    assert first.status_code == 200, first.text
    payload = first.json()
    assert {"content", "stop", "stop_type", "timings", "tokens_cached", "truncated"} <= set(payload)
    assert {"prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "predicted_per_second"} <= set(
        payload["timings"]
    )
    # The next keystroke extends the prompt: everything before it comes from the slot's KV cache.
    second = requests.post(
        f"{hearth}/infill", headers=auth, json={**body, "prompt": "    r"}, timeout=60
    ).json()
    assert second["tokens_cached"] >= payload["tokens_evaluated"] - 8
    assert second["timings"]["prompt_n"] < payload["timings"]["prompt_n"]


def test_continue_shapes(hearth, raw_token):
    auth = {"Authorization": f"Bearer {raw_token}"}
    # Continue's OpenAI provider, autocomplete with FIM: legacy completions with suffix, streamed.
    fim = requests.post(
        f"{hearth}/v1/completions",
        headers=auth,
        stream=True,
        timeout=60,
        json={
            "model": "hearth",
            "prompt": "def greet(name):\n    ",
            "suffix": "\n\ngreet('x')\n",
            "max_tokens": 12,
            "temperature": 0.01,
            "top_p": 1,
            "frequency_penalty": 0,
            "presence_penalty": 0,
            "stop": ["\n\n", "\r\n\r\n", "/src/", "#- coding: utf-8", "```", "\ndef", "\nclass", '\n"""#'],
            "stream": True,
        },
    )
    assert fim.status_code == 200 and fim.headers["Content-Type"].startswith("text/event-stream")
    events = _sse(fim)
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] in {"stop", "length"}
    # Continue's llama.cpp provider: POST /completion, always streamed, llama.cpp sampling names.
    comp = requests.post(
        f"{hearth}/completion",
        headers=auth,
        stream=True,
        timeout=60,
        json={
            "prompt": "import sys\n",
            "stream": True,
            "n_predict": 8,
            "frequency_penalty": 0,
            "presence_penalty": 0,
            "min_p": 0.05,
            "mirostat": 0,
            "stop": ["\n\n"],
            "top_k": 40,
            "top_p": 0.95,
            "temperature": 0.01,
        },
    )
    assert comp.status_code == 200
    chunks = _sse(comp)
    assert all("content" in c for c in chunks) and chunks[-1]["stop"] is True and "timings" in chunks[-1]
    assert all(c["stop"] is False for c in chunks[:-1])


def test_superseded_request_returns_early_and_empty(hearth, raw_token, engine_live):
    import threading

    auth = {"Authorization": f"Bearer {raw_token}"}
    out = {}

    def slow():
        out["slow"] = requests.post(
            f"{hearth}/v1/completions", headers=auth, timeout=60, json={"prompt": "x = [", "max_tokens": 250}
        )

    thread = threading.Thread(target=slow)
    thread.start()
    import time

    time.sleep(0.15)
    fresh = requests.post(
        f"{hearth}/v1/completions", headers=auth, timeout=60, json={"prompt": "y = ", "max_tokens": 4}
    )
    thread.join()
    assert fresh.status_code == 200 and fresh.headers.get("X-Hearth-Superseded") is None
    slow_resp = out["slow"]
    assert slow_resp.status_code == 200
    if slow_resp.headers.get("X-Hearth-Superseded"):  # unless it finished before the newer one arrived
        assert slow_resp.json()["choices"][0]["text"] == ""
