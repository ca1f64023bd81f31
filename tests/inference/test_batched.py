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


TIE_LOGITS = 0.05  # two best logits closer than this: kernel-order rounding may flip the greedy pick


def _equal_but_for_a_tie(completer, prompt: str, max_tokens: int, batched_steps: list[str]) -> None:
    """`batched_steps` (the text after each token of a batched greedy run) equals the sequential
    greedy run step by step, or first parts from it where the sequential top two logits tie."""
    import llama_cpp
    import numpy as np

    gen = completer.prepare(
        prompt, n_ctx=completer.llm.n_ctx(), options=SamplingOptions(max_tokens=max_tokens)
    )
    llm = completer.llm
    llm.reset()
    llm.eval(gen.ids)
    steps, gaps = [], []
    while True:
        # The last token's logits from llama.cpp itself: `Llama.scores` is only written with
        # logits_all, and read without it held whatever that memory held before (zeros: every
        # mismatch passed as a tie; freed memory: NaN).
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        scores = gen.mask(np.array(logits, dtype=np.float32))
        assert np.isfinite(scores).any()
        top = np.sort(scores)[-2:]
        token = int(np.argmax(scores))
        gaps.append(float(top[1] - top[0]))
        before = gen.n_generated
        done = gen.accept(token)
        if gen.n_generated > before:
            steps.append(bytes(gen.out[len(gen.heal) :]).decode("utf-8", errors="ignore"))
        if done:
            break
        llm.eval([token])
    for i, (want, have) in enumerate(zip(steps, batched_steps)):
        if want != have:
            assert gaps[i] < TIE_LOGITS, f"step {i}: {have!r} != {want!r} with a logit gap of {gaps[i]:.3f}"
            return
    assert len(batched_steps) == len(steps), (batched_steps[-1:], steps[-1:])


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


@pytest.mark.parametrize("on", [False, True], ids=["flash-off", "flash-on"])
def test_the_flash_attention_setting_sets_both_paths_kernels(micro_base, settings, monkeypatch, on):
    """HEARTH_FLASH_ATTENTION picks the attention kernels of every llama.cpp context Hearth opens
    (the sequential path evaluation uses, the engine's batched context), and both answer alike."""
    import llama_cpp
    import llama_cpp.llama_cpp as low

    from appliance.llm.fim import fim_format_get
    from appliance.llm.prompt import Completer
    from appliance.llm.runtime import llama_open
    from inference.engine.batched import BatchedModel

    settings.HEARTH_FLASH_ATTENTION = on
    kinds, init = [], low.llama_init_from_model

    def spy(model, params):
        kinds.append(params.flash_attn_type)
        return init(model, params)

    monkeypatch.setattr(low, "llama_init_from_model", spy)  # Llama's own contexts
    monkeypatch.setattr(llama_cpp, "llama_init_from_model", spy)  # the engine's batched context
    fim = fim_format_get(micro_base.fim_format)
    llm = llama_open(micro_base.gguf_path, n_ctx=512, n_threads=1, seed=0)
    model = BatchedModel(micro_base.gguf_path, fim, seqs=2, n_ctx=512, n_threads=1)
    try:
        want = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if on else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        assert len(kinds) == 3 and set(kinds) == {want}
        sequential = Completer(llm, fim)
        for prompt, suffix, options in PROMPTS[:3]:
            options = SamplingOptions(**{"max_tokens": 12, **options})
            have = model.lanes[0].complete(prompt, suffix, options=options)
            assert have.text == sequential.complete(prompt, suffix, options=options).text
    finally:
        model.close()
        llm.close()


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
    results, steps_seen = {}, {"loop": []}

    def loop():
        results["loop"] = batched.lanes[0].complete(
            "def loop():\n    while True:\n        ",
            options=SamplingOptions(max_tokens=60),
            on_token=lambda text: (steps_seen["loop"].append(text), generating.set()),
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
    # The loop lane's steps shared a batch with 64-token prompt slices, which llama.cpp multiplies
    # with other kernels than a lone token: its greedy answer may only part from the sequential one
    # where the sequential model's two best tokens were all but tied.
    _equal_but_for_a_tie(sequential, "def loop():\n    while True:\n        ", 60, steps_seen["loop"])
    if results["loop"].completion_tokens == 60:  # it kept generating while the long prompt went in
        assert batched.stats["steps"] - steps >= 3


def _cells(model, lane) -> int:
    """How many positions `lane`'s sequence holds in its KV stream (0 when empty)."""
    import llama_cpp

    with model.lock:
        top = llama_cpp.llama_memory_seq_pos_max(model.mem, lane.seq)
    return top + 1


def _while_generating(model, lane_index: int, then):
    """Run `then()` while lane `lane_index` is mid-answer (after its third token); its result too."""
    started, out = threading.Event(), {}
    seen = []

    def on_token(text):
        seen.append(text)
        if len(seen) == 3:
            started.set()

    def run():
        out["result"] = model.lanes[lane_index].complete(
            "def loop():\n    while True:\n        ",
            options=SamplingOptions(max_tokens=40),
            on_token=on_token,
        )

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(60)
    then_result = then()
    thread.join()
    return out["result"], then_result


def test_a_gap_between_busy_streams_is_closed_mid_answer_and_both_caches_survive(batched, sequential):
    """Streams 0 and 2 busy, 1 idle: after a few steps lane 2 moves to stream 1 mid-answer (one run,
    one pass over the weights) and the idle lane there takes stream 2; each keeps its own cache."""
    idle_text = "".join(f"alpha_{i} = {i}\n" for i in range(20))
    mover_text = "".join(f"beta_{i} = {i} * 2\n" for i in range(20))
    idle, mover = batched.lanes[1], batched.lanes[2]
    idle.complete(idle_text, options=SamplingOptions(max_tokens=2))
    mover.complete(mover_text, options=SamplingOptions(max_tokens=2))
    assert batched.stats["moves"] == 0  # one lane at a time is one run: nothing moves
    options = SamplingOptions(max_tokens=16)
    _, moved = _while_generating(batched, 0, lambda: mover.complete(mover_text + "gamma", options=options))
    assert (mover.seq, idle.seq) == (1, 2) and batched.stats["moves"] == 1
    assert batched.stats["move_ms"] > 0  # the copy's cost is counted
    assert moved.cached_tokens >= moved.prompt_tokens - 8  # its cache was there (all but "gamma")
    assert moved.text == sequential.complete(mover_text + "gamma", options=options).text
    # The lane moved up still holds its user's prompt, on its new stream.
    assert _cells(batched, idle) == len(idle.tokens) > 50
    again = idle.complete(idle_text + "delta", options=options)
    assert again.cached_tokens >= again.prompt_tokens - 8
    assert again.text == sequential.complete(idle_text + "delta", options=options).text


def test_a_lane_whose_cells_do_not_come_back_fails_its_answer_instead_of_garbling_it(
    batched, sequential, monkeypatch
):
    from appliance.errors import EngineError
    from inference.engine.batched import Lane

    mover = batched.lanes[2]
    mover.complete("x = 1\n", options=SamplingOptions(max_tokens=2))
    monkeypatch.setattr(Lane, "_copy_in", lambda self, buf, length: False)

    def start_mover():
        with pytest.raises(EngineError, match="lost its KV cache"):
            mover.complete("def g(y):\n    return y", options=SamplingOptions(max_tokens=16))
        return True

    other, raised = _while_generating(batched, 0, start_mover)
    assert raised and batched.stats["moves"] == 1 and mover.tokens == []
    # The lane that was not moved answered as if nothing had happened.
    expected = sequential.complete(
        "def loop():\n    while True:\n        ", options=SamplingOptions(max_tokens=40)
    )
    assert other.text == expected.text


def test_a_step_puts_its_tokens_in_stream_order(batched, monkeypatch):
    """llama.cpp evaluates a step in one pass only for consecutive streams in increasing order."""
    import llama_cpp

    decode, orders = llama_cpp.llama_decode, []

    def spy(ctx, batch):
        orders.append([batch.seq_id[i][0] for i in range(batch.n_tokens)])
        return decode(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", spy)
    done = threading.Barrier(4)

    def run(i):
        done.wait()
        batched.lanes[i].complete(f"def f{i}(x):\n    return x", options=SamplingOptions(max_tokens=12))

    threads = [threading.Thread(target=run, args=(i,)) for i in (3, 1, 2, 0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert any(len(set(order)) > 1 for order in orders)  # some steps did decode several lanes
    assert all(order == sorted(order) for order in orders)


def test_a_lane_state_moves_to_another_lane_and_clears(batched):
    """What the scheduler parks in the KV store when a slot changes user, and brings back."""
    text = "".join(f"beta_{i} = {i}\n" for i in range(20))
    lane = batched.lanes[0]
    lane.complete(text, options=SamplingOptions(max_tokens=2))
    state = lane.state_get()
    assert state is not None and state[1] == lane.tokens
    target = batched.lanes[2]
    assert target.state_set(*state)
    assert _cells(batched, target) == len(lane.tokens)
    lane.clear()
    assert lane.tokens == [] and lane.state_get() is None and _cells(batched, lane) == 0
