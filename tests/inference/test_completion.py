"""Prompt building on a real GGUF (micro model): context placement, line-boundary trimming, cancel."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from appliance.llm.sampling import MIN_P, Generation, SamplingOptions
from tests.inference.conftest import cancel_after


@pytest.fixture
def completer(micro_base):
    from appliance.llm.fim import fim_format_get
    from appliance.llm.prompt import Completer
    from appliance.llm.runtime import llama_open

    llm = llama_open(micro_base.gguf_path, n_ctx=512, n_threads=1, seed=0)
    yield Completer(llm, fim_format_get(micro_base.fim_format))
    llm.close()


def test_context_goes_after_file_separators_before_the_fim_prefix(completer):
    ids, _ = completer.prompt_build(
        "def f():\n    ",
        "\n",
        prefix_budget=200,
        context=[("util.py", "def helper():\n    return 1\n")],
        filepath="app.py",
    )
    sep = completer._special(completer.fim.file_sep)
    assert ids[0] == sep and ids.count(sep) == 2
    assert ids.index(completer.fim_ids["prefix"]) > ids.index(sep, 1)
    head = completer.llm.detokenize(ids[: ids.index(completer.fim_ids["prefix"])], special=False).decode()
    assert "util.py\ndef helper():" in head and head.endswith("app.py\n")


def test_long_prefix_and_suffix_are_cut_at_line_boundaries(completer):
    prefix = "".join(f"value_{i} = compute({i}, 'item {i}')\n" for i in range(200)) + "result = "
    suffix = "".join(f"print(value_{i})\n" for i in range(200))
    ids, _ = completer.prompt_build(prefix, suffix, prefix_budget=120, suffix_budget=40, trim_lines=True)
    p, s, m = (completer.fim_ids[k] for k in ("prefix", "suffix", "middle"))
    kept_prefix = completer.llm.detokenize(ids[ids.index(p) + 1 : ids.index(s)], special=False).decode()
    kept_suffix = completer.llm.detokenize(ids[ids.index(s) + 1 : ids.index(m)], special=False).decode()
    assert prefix.endswith(kept_prefix) and prefix[-len(kept_prefix) - 1] == "\n"
    assert kept_prefix.startswith("value_")
    assert suffix.startswith(kept_suffix) and kept_suffix.endswith("\n") and len(kept_suffix) < len(suffix)
    assert ids.index(s) - ids.index(p) - 1 <= 120


def test_cancel_stops_between_tokens_and_zero_tokens_only_warms_the_cache(completer):
    cancel, on_token = cancel_after(3)

    r = completer.complete(
        "import os\n", options=SamplingOptions(max_tokens=100), on_token=on_token, cancel=cancel
    )
    assert r.finish_reason == "cancelled" and r.completion_tokens == 3
    warm = completer.complete("def main(argv):\n    return argv", options=SamplingOptions(max_tokens=0))
    assert warm.text == "" and warm.completion_tokens == 0
    again = completer.complete("def main(argv):\n    return argv[0]", options=SamplingOptions(max_tokens=2))
    assert again.cached_tokens >= warm.prompt_tokens - 2


def test_users_sharing_one_slot_keep_their_prompt_cache(micro_base):
    """More developers than slots: each one's KV cache is parked and restored, not recomputed."""
    from inference.engine.scheduler import Job, Scheduler
    from inference.engine.selection import ServedModel
    from inference.engine.server import job_run, pool_load, slot_switch

    served = ServedModel("m", micro_base.gguf_path, micro_base.fim_format, None, "m")
    pool = pool_load(served, slots=1, n_ctx=1024, n_threads=1, kv_cache_mb=64)
    scheduler = Scheduler(slots=1, run=job_run, switch=slot_switch)
    scheduler.swap(pool)
    files = {
        "alice": "".join(f"alpha_{i} = {i}\n" for i in range(60)),
        "bob": "".join(f"beta_{i} = {i} * 2\n" for i in range(60)),
    }
    texts = {}
    for keystroke in range(3):
        for user, text in files.items():
            result = scheduler.wait(
                scheduler.submit(Job(user=user, body=_request(user, text + "x" * keystroke)))
            )
            choice = result.choices[0]
            if keystroke:
                assert choice.cached_tokens >= choice.prompt_tokens - 2, (user, keystroke, choice)
            texts[(user, keystroke)] = choice.text
    assert pool.kv.stats["restored"] >= 4
    # A restored cache gives the same answer as a fresh slot.
    fresh = pool_load(served, slots=1, n_ctx=1024, n_threads=1)
    again = job_run(fresh.completers[0], Job(user=None, body=_request("bob", files["bob"] + "xx")))
    assert again.choices[0].text == texts[("bob", 2)]
    scheduler.close()
    fresh.close()


def _sampled(logits: list[float], *, temperature: float, top_p: float, draws: int = 4000) -> np.ndarray:
    gen = Generation(
        None, [], b"", options=SamplingOptions(max_tokens=1, temperature=temperature, top_p=top_p)
    )
    rng = np.random.default_rng(0)
    picks = [gen.sample(np.asarray(logits, dtype=np.float32), rng) for _ in range(draws)]
    return np.bincount(picks, minlength=len(logits)) / draws


def _llama_cpp_distribution(logits: list[float], *, temperature: float, top_p: float) -> np.ndarray:
    """What llama.cpp's own chain (top-p, min-p, temperature: the sequential path's) leaves to draw from."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(top_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(temperature))
    data = (llama_cpp.llama_token_data * len(logits))(
        *[llama_cpp.llama_token_data(i, x, 0.0) for i, x in enumerate(logits)]
    )
    cur = llama_cpp.llama_token_data_array(data, len(logits), -1, False)
    llama_cpp.llama_sampler_apply(chain, ctypes.byref(cur))
    llama_cpp.llama_sampler_free(chain)
    kept = {data[i].id: data[i].logit for i in range(cur.size)}
    weights = np.array(
        [np.exp(kept[i] - max(kept.values())) if i in kept else 0.0 for i in range(len(logits))]
    )
    return weights / weights.sum()


@pytest.mark.parametrize(
    ("logits", "temperature", "top_p"),
    [
        (
            [5.0, 4.0, 3.0, 0.0, -2.0],
            0.7,
            0.95,
        ),  # top-p keeps three tokens, then the temperature spreads them
        ([5.0, 1.5, 1.4, 1.3], 2.0, 1.0),  # min-p: under 5% of the best token, never drawn however hot
        ([2.0, 1.9, 1.8, 0.5], 1.3, 0.9),
    ],
)
def test_sampling_draws_from_what_llama_cpps_sampler_chain_leaves(logits, temperature, top_p):
    expected = _llama_cpp_distribution(logits, temperature=temperature, top_p=top_p)
    freq = _sampled(logits, temperature=temperature, top_p=top_p)
    assert np.all(freq[expected == 0] == 0)
    assert freq == pytest.approx(expected, abs=0.03)


def test_sampling_at_temperature_zero_is_greedy():
    assert _sampled([5.0, 4.9], temperature=0.0, top_p=1.0, draws=10)[0] == 1.0


def _request(user: str, prefix: str):
    from appliance.llm.sampling import SamplingOptions
    from inference.engine.request import EngineRequest

    return EngineRequest(user=user, prefix=prefix, sampling=SamplingOptions(max_tokens=4))
