"""Continuous batching on a real GGUF (micro model): same answers as the sequential path, shared steps."""

from __future__ import annotations

import threading

import pytest

from appliance.llm.sampling import SamplingOptions
from tests.inference.conftest import cancel_after

PROMPTS = [
    ("def add(a, b):\n    ", None, {}),
    ("import os\nimport sys\n\n", None, {"max_tokens": 24}),
    ("class Parser:\n    def parse(self, text):\n        return", None, {"single_line": True}),
    ("for i in range(10):\n", None, {"stop": ["\n\n"], "max_tokens": 30}),
    ("def main():\n    x = ", "\n    return x\n", {}),
    ("values = [", "]\nprint(values)\n", {"max_lines": 2, "max_tokens": 20}),
    ("", None, {"max_tokens": 8}),
]


@pytest.fixture
def sequential(micro_base):
    from appliance.llm.fim import fim_format_get
    from appliance.llm.prompt import Completer
    from appliance.llm.runtime import llama_open

    llm = llama_open(micro_base.gguf_path, n_ctx=512, n_threads=1, seed=0)
    yield Completer(llm, fim_format_get(micro_base.fim_format))
    llm.close()


@pytest.fixture
def batched(micro_base):
    from appliance.llm.fim import fim_format_get
    from inference.engine.batched import BatchedModel

    model = BatchedModel(
        micro_base.gguf_path, fim_format_get(micro_base.fim_format), seqs=4, n_ctx=512, n_threads=1
    )
    yield model
    model.close()


def _all_at_once(lanes, jobs):
    """Run (lane, prefix, suffix, options) jobs concurrently; results in job order."""
    results = [None] * len(jobs)

    def one(i, lane, prefix, suffix, options):
        results[i] = lane.complete(prefix, suffix, options=SamplingOptions(**{"max_tokens": 16, **options}))

    threads = [threading.Thread(target=one, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_greedy_batched_answers_equal_the_sequential_path(sequential, batched):
    expected = [
        sequential.complete(p, s, options=SamplingOptions(**{"max_tokens": 16, **o})) for p, s, o in PROMPTS
    ]
    lanes = batched.lanes
    got = _all_at_once(lanes, [(lanes[i % len(lanes)], p, s, o) for i, (p, s, o) in enumerate(PROMPTS[:4])])
    got += _all_at_once(lanes, [(lanes[i % len(lanes)], p, s, o) for i, (p, s, o) in enumerate(PROMPTS[4:])])
    for want, have in zip(expected, got):
        assert (have.text, have.finish_reason, have.completion_tokens, have.stop_word) == (
            want.text,
            want.finish_reason,
            want.completion_tokens,
            want.stop_word,
        )
        assert have.prompt_tokens == want.prompt_tokens
    assert any(r.completion_tokens > 4 for r in got)
    assert batched.stats["max_batch"] >= 2  # lanes really shared decode steps
    assert batched.stats["steps"] < sum(r.completion_tokens for r in got)


def test_a_lane_reuses_its_cache_and_answers_as_if_cold(sequential, batched):
    lane = batched.lanes[1]
    text = "".join(f"alpha_{i} = {i}\n" for i in range(30))
    lane.complete(text, options=SamplingOptions(max_tokens=4))
    again = lane.complete(text + "beta", options=SamplingOptions(max_tokens=8))
    assert again.cached_tokens >= again.prompt_tokens - 3
    assert again.text == sequential.complete(text + "beta", options=SamplingOptions(max_tokens=8)).text
    # Another lane's work does not disturb this lane's cells.
    batched.lanes[2].complete("def other():\n    ", options=SamplingOptions(max_tokens=8))
    third = lane.complete(text + "beta", options=SamplingOptions(max_tokens=8))
    assert third.text == again.text and third.cached_tokens >= third.prompt_tokens - 1


def test_a_cancelled_lane_stops_between_steps_while_others_go_on(batched):
    cancel, on_token = cancel_after(3)

    results = {}

    def long_one():
        results["long"] = batched.lanes[0].complete(
            "import os\n", options=SamplingOptions(max_tokens=200), on_token=on_token, cancel=cancel
        )

    def other():
        results["other"] = batched.lanes[1].complete(
            "def f(x):\n    return", options=SamplingOptions(max_tokens=12)
        )

    threads = [threading.Thread(target=long_one), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["long"].finish_reason == "cancelled" and results["long"].completion_tokens == 3
    assert results["other"].finish_reason in ("length", "stop") and results["other"].completion_tokens > 0
    # The cancelled lane is usable again at once.
    assert batched.lanes[0].complete("x = 1\n", options=SamplingOptions(max_tokens=2)).completion_tokens <= 2


def test_a_long_prompt_is_evaluated_in_slices_beside_a_generating_lane(batched, sequential):
    from inference.engine import batched as batched_module

    long_prompt = "".join(f"value_{i} = compute({i})\n" for i in range(40))
    assert len(sequential._tok(long_prompt)) > 2 * batched_module.PROMPT_CHUNK
    generating = threading.Event()
    results = {}

    def loop():
        results["loop"] = batched.lanes[0].complete(
            "def loop():\n    while True:\n        ",
            options=SamplingOptions(max_tokens=60),
            on_token=lambda text: generating.set(),
        )

    thread = threading.Thread(target=loop)
    thread.start()
    assert generating.wait(60)
    steps = batched.stats["steps"]
    results["long"] = batched.lanes[1].complete(long_prompt, options=SamplingOptions(max_tokens=8))
    thread.join()
    assert (
        results["long"].text == sequential.complete(long_prompt, options=SamplingOptions(max_tokens=8)).text
    )
    assert (
        results["loop"].text
        == sequential.complete(
            "def loop():\n    while True:\n        ", options=SamplingOptions(max_tokens=60)
        ).text
    )
    if results["loop"].completion_tokens == 60:  # it kept generating while the long prompt went in
        assert batched.stats["steps"] - steps >= 3
