"""`make bench-serving`: serving latency through Hearth's HTTP API, side by side with llama.cpp.

Starts its own engine and gunicorn (appliance.processes) on free loopback ports in a throwaway
instance directory, on one GGUF (SmolLM2-135M-Instruct by default, or the micro model with
`--model micro`), and prints one JSON object per line: {"metric", "value", "goal"}.

- gateway_vs_direct_p50: p50 of a completion through the HTTP API (auth, filters, engine hop)
  over p50 of the same completion by `llama_cpp.Llama` in this process; requests alternate.
- cache_hit_vs_cold_p50: a request that extends the user's previous prompt by a few characters
  (the next keystroke) over a cold one of the same size.
- concurrency_p95_ratio / concurrency_errors: p95 with 8 concurrent clients over one client. No
  goal: the CPU sets this ratio (see engine_concurrency_p95_ratio); the yardstick for Hearth's own
  cost under that load is llama-server (below).
- engine_concurrency_p95_ratio: the same typing clients on the engine's batched model in this
  process, no HTTP: what the CPU itself allows (each client decodes every step; a step of 8 lanes
  costs several times a step of one on a small CPU).
- context_keystroke_vs_plain_p50: a typing client served by a version that serves with repository
  context (snippets from a code index of this repository's own files) over the same client with the
  policy's repository-context switch off; the two alternate in phases within one run.
- hotswap_failed_requests: failed requests while a promotion hot-swaps under that load.
- replicas: two engine replicas (each pinned to half the cores, threads sized to it) behind a web
  tier with HEARTH_ENGINE_URLS, against the one engine on all cores, under the 8-client load
  (two_replicas_vs_one_p95); then one replica SIGKILLed while the clients type:
  replica_failover_failed_requests (goal 0), and the p95 of the requests after the kill.
- llama-server: llama.cpp's own server, built from the source llama-cpp-python compiled
  (`benchmarks/llama_server.py`, cached), on the same GGUF, threads, slots, context, KV layout (a
  stream per slot, llama-server's default for --parallel) and attention kernels, in phases
  alternating with Hearth: serving_vs_llama_server_single_p50 (one client, goal <= 1.05),
  serving_vs_llama_server_p50 and _p95 (8 clients, goal <= 1.0). Eight developers
  a side (one typing alone, then all eight) keep typing their own files through 12 short phases
  (`--yardstick-phases`, `--yardstick-rounds`), so both sides see the same drift of the machine;
  each phase's pair of p50s is printed as a ratio, and so are the engine's decode steps in the
  series and the lanes it moved next to the busy ones (hearth_engine_batches), beside
  llama-server's own decode calls and tokens over the same requests (llama_server_batches, from its
  /metrics).

- insecure filter (offline, no engine): the insecure-code response filter on
  benchmarks/insecure_corpus.py, insecure_filter_recall (a vulnerable snippet counts when the cut
  lands before its offending line) and insecure_filter_precision, and its cost per suggestion on
  windows of Hearth's own source (a --prompt-chars prefix, the next six lines):
  insecure_filter_p50_ms (goal <= 1.0) and _p95_ms. `--only-filters` runs this alone, in seconds.

`--series` runs only some of the series (a quick check: `--model micro --series context`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = (ROOT / "inference" / "filters.py").read_text() + (
    ROOT / "inference" / "engine" / "scheduler.py"
).read_text()


# llama.cpp's worker threads keep spinning for a moment after a call: back-to-back, the side
# that just ran would steal the cores of the other. A pause between the two keeps them apart.
PAUSE_S = 0.3
# How long the llama-server series waits for one answer (a typing request takes about a second).
YARDSTICK_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emit(metric: str, value, goal: str | None) -> None:
    print(json.dumps({"metric": metric, "value": value, "goal": goal}), flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def prompt_make(i: int, chars: int) -> str:
    """A distinct code prompt of about `chars` characters ending mid-line (no whitespace at the end)."""
    start = (i * 977) % max(1, len(CODE) - chars)
    body = CODE[start : start + chars]
    return f"# request {i}\n{body.rstrip()}\n    result = compute_"


def keystrokes(n: int, chars: int):
    """Client n's prompts: opening its file (a cold prompt), then one more character per keystroke."""
    prompt = prompt_make(2000 + n * 37, chars)
    yield prompt
    for i in itertools.count():
        prompt += "xy"[i % 2]
        yield prompt


def run_together(target, args_list: list[tuple], **kwargs) -> None:
    """One thread per argument tuple (each also given `kwargs`), all started, all joined."""
    threads = [threading.Thread(target=target, args=a, kwargs=kwargs) for a in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def setup(args) -> dict:
    home = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    os.environ.update(
        {
            "HEARTH_HOME": str(home),
            "HEARTH_ENGINE_PORT": str(free_port()),
            "HEARTH_ENGINE_THREADS": str(args.threads),
            # Every core, like the llama.cpp baseline it is compared with (nothing trains meanwhile).
            "HEARTH_ENGINE_CPUS": "all",
            "HEARTH_ENGINE_CTX": str(args.ctx),
            "HEARTH_ENGINE_POLL_S": "0.5",
            "HEARTH_RATE_LIMIT": "0",
            "HEARTH_LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "appliance.settings",
        }
    )
    if args.slots:
        os.environ["HEARTH_ENGINE_SLOTS"] = str(args.slots)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from trainer.models import BaseModel

    if args.gguf:
        base = BaseModel.objects.create(
            slug="bench-base",
            display_name="bench",
            gguf_path=str(args.gguf),
            architecture="llama",
            fim_format="",
            can_infill=False,
        )
        base.transition(BaseModel.Status.READY)
    elif args.model == "micro":
        from trainer.basemodels.services import basemodel_bootstrap

        base = basemodel_bootstrap(log=lambda m: None)
    else:
        from trainer.basemodels.services import basemodel_fetch_default

        base = basemodel_fetch_default(log=lambda m: None)
    return {"home": home, "base": base}


@dataclass
class Bench:
    """What every measured series needs: the options, the served base, tokens and the API's URL."""

    args: argparse.Namespace
    env: dict
    tokens: list[str]
    url: str

    @property
    def base(self):
        return self.env["base"]

    def call(
        self,
        session,
        raw: str,
        prompt: str,
        max_tokens: int | None = None,
        filepath: str = "",
        url: str | None = None,
        timeout: float = 300.0,
    ) -> tuple[float, dict]:
        body = {"prompt": prompt, "max_tokens": max_tokens or self.args.max_tokens, "temperature": 0}
        if filepath:
            body["filepath"] = filepath
        started = time.perf_counter()
        r = session.post(
            url or self.url, headers={"Authorization": f"Bearer {raw}"}, timeout=timeout, json=body
        )
        elapsed = time.perf_counter() - started
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        return elapsed, r.json()

    def typing_client(
        self,
        n: int,
        raw: str,
        rounds: int,
        latencies: list,
        errors: list,
        *,
        stop=None,
        ready: threading.Barrier | None = None,
        url: str | None = None,
        tokens: list | None = None,
        timeout: float = 300.0,
        abort: threading.Event | None = None,
        typist: tuple | None = None,
    ) -> None:
        """A developer typing: after opening a file, each request extends the prompt by a character.
        `url`: another server's completions endpoint; `tokens` collects each answer's generated tokens;
        `abort`: set at the first failure, which ends every client sharing it (a hung server);
        `typist`: (session, keystrokes) of a client that goes on typing the file it opened earlier."""
        import requests

        sess, prompts = typist or (requests.Session(), keystrokes(n, self.args.prompt_chars))

        def failed(exc: Exception) -> None:
            errors.append(str(exc))
            if abort is not None:
                abort.set()

        try:  # opening the file: a cold prompt, not counted (every client pays it once)
            if typist is None:
                self.call(sess, raw, next(prompts), url=url, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            failed(exc)
        if ready is not None:  # steady state: everyone has opened their file before anyone types
            ready.wait()
        for i, prompt in enumerate(prompts):
            if (stop is None and i >= rounds) or (stop is not None and stop.is_set()):
                break
            if abort is not None and abort.is_set():
                break
            try:
                elapsed, payload = self.call(sess, raw, prompt, url=url, timeout=timeout)
                latencies.append(elapsed)
                if tokens is not None:
                    tokens.append(payload["usage"]["completion_tokens"])
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                failed(exc)


def engine_only_series(b: Bench) -> None:
    """The typing load on the engine's batched model in-process, without HTTP.

    Run first, before anything in this process runs llama.cpp on its main thread: once a thread holds
    an OpenMP team, llama.cpp graphs computed on another thread ran about 2x slower here. (The engine
    process only ever decodes on its decode thread.)"""
    from django.conf import settings

    from appliance.llm.fim import fim_format_get
    from appliance.llm.sampling import SamplingOptions
    from inference.engine.batched import BatchedModel

    args = b.args
    model = BatchedModel(
        b.base.gguf_path,
        fim_format_get(b.base.fim_format),
        seqs=settings.HEARTH_ENGINE_SLOTS,
        n_ctx=args.ctx,
        n_threads=args.threads,
    )
    options = SamplingOptions(max_tokens=args.max_tokens, temperature=0.0)
    try:

        def lane_client(n: int, latencies: list, ready: threading.Barrier, rounds: int) -> None:
            prompts = keystrokes(n, args.prompt_chars)
            model.lanes[n].complete(next(prompts), options=options)
            ready.wait()
            for prompt in itertools.islice(prompts, rounds):
                started = time.perf_counter()
                model.lanes[n].complete(prompt, options=options)
                latencies.append(time.perf_counter() - started)

        engine_single, engine_many = [], []
        # Twice the rounds for the lone client: its p95 is the denominator, and one slow step moves it.
        lane_client(0, engine_single, threading.Barrier(1), 2 * args.requests)
        ready = threading.Barrier(8)
        run_together(lane_client, [(n, engine_many, ready, args.requests) for n in range(8)])
    finally:
        model.close()
    emit("engine_single_p95_ms", round(pct(engine_single, 0.95) * 1000, 1), None)
    emit("engine_eight_p95_ms", round(pct(engine_many, 0.95) * 1000, 1), None)
    emit("engine_concurrency_p95_ratio", round(pct(engine_many, 0.95) / pct(engine_single, 0.95), 3), None)


def gateway_vs_direct_series(b: Bench, session) -> None:
    """The same prompts through Hearth's HTTP API and straight into llama.cpp, alternating."""
    from appliance.llm.runtime import llama_open

    args = b.args
    # The same kernels as the engine (HEARTH_FLASH_ATTENTION): the ratio is the gateway's cost alone.
    llm = llama_open(b.base.gguf_path, n_ctx=args.ctx, n_threads=args.threads, seed=0)
    # Warm both paths: every gunicorn thread opens its own database and engine connections.
    for i in range(24):
        b.call(session, b.tokens[0], f"x = {i}", max_tokens=1)
    b.call(session, b.tokens[0], prompt_make(10_000, args.prompt_chars))
    llm.create_completion(prompt_make(10_001, args.prompt_chars), max_tokens=args.max_tokens, temperature=0)
    direct, gateway, tokens_direct, tokens_gateway = [], [], 0, 0
    for i in range(args.requests):
        prompt = prompt_make(i, args.prompt_chars)  # distinct first line: no cache reuse on either side
        llm.reset()
        started = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=args.max_tokens, temperature=0, top_k=1)
        direct.append(time.perf_counter() - started)
        tokens_direct += out["usage"]["completion_tokens"]
        time.sleep(PAUSE_S)
        elapsed, payload = b.call(session, b.tokens[0], prompt)
        gateway.append(elapsed)
        tokens_gateway += payload["usage"]["completion_tokens"]
        time.sleep(PAUSE_S)
    del llm
    emit("direct_p50_ms", round(statistics.median(direct) * 1000, 1), None)
    emit("gateway_p50_ms", round(statistics.median(gateway) * 1000, 1), None)
    emit("generated_tokens_direct_vs_gateway", [tokens_direct, tokens_gateway], None)
    emit("gateway_vs_direct_p50", round(statistics.median(gateway) / statistics.median(direct), 3), "<= 1.10")


def cache_series(b: Bench, session) -> None:
    """A cold prompt, then the next keystrokes on it (the prompt cache's hit)."""
    cold, hit = [], []
    for i in range(b.args.requests):
        prompt = prompt_make(1000 + i, b.args.prompt_chars)
        cold.append(b.call(session, b.tokens[0], prompt)[0])
        hit.append(b.call(session, b.tokens[0], prompt + "val")[0])  # the next keystrokes
    emit("cold_p50_ms", round(statistics.median(cold) * 1000, 1), None)
    emit("cache_hit_p50_ms", round(statistics.median(hit) * 1000, 1), None)
    emit("cache_hit_vs_cold_p50", round(statistics.median(hit) / statistics.median(cold), 3), "<= 0.25")


def concurrency_series(b: Bench) -> list[str]:
    """One typing client alone, then eight at once; returns the eight clients' errors."""
    single, errors1 = [], []
    b.typing_client(0, b.tokens[1], b.args.requests, single, errors1)
    many, errors8 = [], []
    ready = threading.Barrier(8)
    run_together(
        b.typing_client, [(n, b.tokens[1 + n], b.args.requests, many, errors8) for n in range(8)], ready=ready
    )
    emit("single_client_p95_ms", round(pct(single, 0.95) * 1000, 1), None)
    emit("eight_clients_p95_ms", round(pct(many, 0.95) * 1000, 1), None)
    emit("concurrency_p95_ratio", round(pct(many, 0.95) / pct(single, 0.95), 3), None)
    emit("concurrency_errors", len(errors1) + len(errors8), "0")
    return errors8


def version_make(b: Bench, name: str, served_arm: str = ""):
    """A candidate version serving a copy of the base GGUF (no training), on a dataset of its own."""
    from trainer.models import Dataset, ModelVersion, TrainingRun

    copy = b.env["home"] / name
    shutil.copy(b.base.gguf_path, copy)
    dataset = Dataset.objects.create(status=Dataset.Status.READY)
    run = TrainingRun.objects.create(base=b.base, dataset=dataset, status=TrainingRun.Status.SUCCEEDED)
    return ModelVersion.objects.create(
        base=b.base,
        run=run,
        gguf_path=str(copy),
        fim_format=b.base.fim_format,
        status=ModelVersion.Status.CANDIDATE,
        served_arm=served_arm,
        gate_passed=True,
    )


def context_series(b: Bench) -> None:
    """One typing client with repository context against the same client without, in alternating
    phases (the policy switch flips between them; each waits out the web tier's policy cache)."""
    import requests
    from django.conf import settings

    from appliance import paths
    from inference.api.engine_client import engine_health
    from inference.models import ServingPolicy
    from trainer.context.index import index_build
    from trainer.versions import model_version_promote

    version = version_make(b, "context.gguf", served_arm="tuned+context")
    files = [
        {"repo": "hearth", "path": str(f.relative_to(ROOT)), "language": "python", "text": f.read_text()}
        for layer in ("appliance", "trainer", "inference")
        for f in sorted((ROOT / layer).rglob("*.py"))
    ]
    stats = index_build(paths.context_index_path(version.run.dataset_id), files)
    model_version_promote(version=version)
    deadline = time.monotonic() + 120
    while engine_health().get("model") != f"hearth-v{version.pk}":
        if time.monotonic() > deadline:
            raise RuntimeError("the version served with context was not served within 120 s")
        time.sleep(0.1)

    def switch(on: bool) -> None:
        ServingPolicy.objects.update_or_create(pk=1, defaults={"repository_context": on})
        time.sleep(settings.HEARTH_POLICY_CACHE_S + 0.5)

    sess = requests.Session()
    latencies: dict[bool, list[float]] = {True: [], False: []}
    prompt_tokens: dict[bool, list[int]] = {True: [], False: []}
    for phase in range(3):
        for on in (True, False) if phase % 2 == 0 else (False, True):
            switch(on)
            prompts = keystrokes(100 + phase, b.args.prompt_chars)
            b.call(sess, b.tokens[0], next(prompts), filepath="bench/typing.py")  # opening the file
            for prompt in itertools.islice(prompts, b.args.requests):
                elapsed, payload = b.call(sess, b.tokens[0], prompt, filepath="bench/typing.py")
                latencies[on].append(elapsed)
                prompt_tokens[on].append(payload["usage"]["prompt_tokens"])
            time.sleep(PAUSE_S)
    switch(True)
    emit("context_index", {"files": stats["files"], "chunks": stats["chunks"]}, None)
    emit(
        "context_prompt_tokens_vs_plain",
        [round(statistics.mean(prompt_tokens[True])), round(statistics.mean(prompt_tokens[False]))],
        None,
    )
    emit("context_keystroke_p50_ms", round(statistics.median(latencies[True]) * 1000, 1), None)
    emit("plain_keystroke_p50_ms", round(statistics.median(latencies[False]) * 1000, 1), None)
    emit(
        "context_keystroke_vs_plain_p50",
        round(statistics.median(latencies[True]) / statistics.median(latencies[False]), 3),
        "<= 1.25",
    )


def hotswap_series(b: Bench) -> list[str]:
    """Eight typing clients while a new version is promoted; returns the failed requests' errors."""
    from inference.api.engine_client import engine_health
    from trainer.versions import model_version_promote

    stop, swap_lat, swap_errors = threading.Event(), [], []
    # The promotion comes once every client has opened its file and is typing: before that, the swap
    # fell among the eight cold openings (not counted), and no counted request saw it.
    opened = threading.Barrier(9)
    threads = [
        threading.Thread(
            target=b.typing_client,
            args=(n, b.tokens[1 + n], 0, swap_lat, swap_errors),
            kwargs={"stop": stop, "ready": opened},
        )
        for n in range(8)
    ]
    for t in threads:
        t.start()
    opened.wait(timeout=300)
    time.sleep(1)
    version = version_make(b, "promoted.gguf")
    promoted_at = time.monotonic()
    model_version_promote(version=version)
    while engine_health().get("model") != f"hearth-v{version.pk}":
        if time.monotonic() - promoted_at > 120:
            swap_errors.append("the promoted model was not served within 120 s")
            break
        time.sleep(0.1)
    swapped_s = time.monotonic() - promoted_at
    during = len(swap_lat) + len(swap_errors)
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    emit("hotswap_seconds", round(swapped_s, 2), None)
    emit("hotswap_requests", len(swap_lat) + len(swap_errors), None)  # from 1 s before the promotion
    emit("hotswap_requests_until_served", during, None)
    emit("hotswap_failed_requests", len(swap_errors), "0")
    return swap_errors


def engine_batches() -> dict:
    """The engine's decode counters (/health `batches`), or {} when it does not answer."""
    from appliance.errors import EngineError
    from inference.api.engine_client import engine_health

    try:
        return engine_health().get("batches") or {}
    except EngineError:
        return {}


def llama_server_batches(port: int) -> dict | None:
    """llama-server's decode counters (its /metrics): decode calls, tokens evaluated and generated."""
    import requests

    names = {
        "llamacpp:n_decode_total": "steps",
        "llamacpp:prompt_tokens_total": "prompt_tokens",
        "llamacpp:tokens_predicted_total": "generated_tokens",
        "llamacpp:n_busy_slots_per_decode": "busy_slots_per_step",
    }
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except requests.RequestException:
        return None
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            found[names[name]] = round(float(value), 2)
    return found or None


def llama_server_command(b: Bench, binary: Path, port: int) -> list[str]:
    """llama-server on Hearth's GGUF with the engine's slots, context per slot, kernels and threads."""
    from django.conf import settings

    from appliance.llm.runtime import flash_attention

    args, slots = b.args, settings.HEARTH_ENGINE_SLOTS
    return [
        str(binary),
        *("--model", b.base.gguf_path, "--host", "127.0.0.1", "--port", str(port)),
        *("--ctx-size", str(args.ctx * slots), "--parallel", str(slots)),
        *("--cont-batching", "--flash-attn", "on" if flash_attention() else "off", "--no-webui", "--metrics"),
        *("--threads", str(args.threads), "--threads-batch", str(args.threads)),
    ]


@dataclass
class Yardstick:
    """The llama-server series: eight developers a side typing the same prompts into Hearth (`ours`)
    and llama-server (`theirs`), and what they measured."""

    b: Bench
    ours: str
    theirs: str

    def __post_init__(self) -> None:
        sides = (self.ours, self.theirs)
        self.latencies: dict[tuple[str, int], list[float]] = {(url, n): [] for url in sides for n in (1, 8)}
        self.tokens: dict[str, list[int]] = {url: [] for url in sides}
        # Each phase's p50, to show how much the machine drifts.
        self.by_phase: dict[tuple[str, int], list[float]] = {key: [] for key in self.latencies}
        self.errors: list[str] = []
        # A failed request ends the series: llama-server has been seen to hang mid-run, spinning in the
        # kernel with every request open, which at 300 s a request would stall the run for hours.
        self.abort = threading.Event()
        self.typists: dict[str, list[tuple]] = {}

    def open_files(self) -> None:
        """Eight developers a side (as many as the slots), the same prompts on both: one of them types
        alone, then all eight together. Each opens a file once (a cold prompt, not counted) and goes
        on typing it phase after phase, so the phases can be short: the machine's speed drifts by
        several percent within a minute, and short phases alternating ABBA put both sides on it."""
        import requests

        b = self.b
        self.typists = {
            url: [(requests.Session(), keystrokes(600 + k, b.args.prompt_chars)) for k in range(8)]
            for url in (self.ours, self.theirs)
        }
        for url in (self.ours, self.theirs):
            for k, (sess, prompts) in enumerate(self.typists[url]):
                b.call(sess, b.tokens[k], next(prompts), url=url, timeout=YARDSTICK_TIMEOUT_S)
            time.sleep(PAUSE_S)

    def type_on(
        self, k: int, url: str, ready: threading.Barrier | None = None, into: list | None = None
    ) -> None:
        """Developer k types `--yardstick-rounds` more keystrokes into its file on `url`'s side,
        alone or (with `ready`) beside the seven others; `into` collects uncounted latencies."""
        self.b.typing_client(
            k,
            self.b.tokens[k],
            self.b.args.yardstick_rounds,
            self.latencies[url, 1 if ready is None else 8] if into is None else into,
            self.errors,
            typist=self.typists[url][k],
            ready=ready,
            url=url,
            tokens=self.tokens[url],
            timeout=YARDSTICK_TIMEOUT_S,
            abort=self.abort,
        )

    def warm_up(self) -> None:
        """A phase a side, not counted: the first keystrokes after start-up were the slowest of a run
        on both sides (the web tier's first requests in each worker, the servers' first batches)."""
        for url in (self.ours, self.theirs):
            barrier = threading.Barrier(8)
            run_together(self.type_on, [(k, url, barrier, []) for k in range(8)])
            time.sleep(PAUSE_S)

    def phases(self) -> None:
        """`--yardstick-phases` phases, alternating which side goes first; each side's phase is one
        developer typing alone, then all eight. Stops at the first failed request."""
        ours, theirs = self.ours, self.theirs
        for phase in range(self.b.args.yardstick_phases):
            for url in (ours, theirs) if phase % 2 == 0 else (theirs, ours):
                starts = {n: len(self.latencies[url, n]) for n in (1, 8)}
                self.type_on(0, url)
                time.sleep(PAUSE_S)
                barrier = threading.Barrier(8)
                run_together(self.type_on, [(k, url, barrier) for k in range(8)])
                time.sleep(PAUSE_S)
                for n in (1, 8):
                    if len(self.latencies[url, n]) > starts[n]:
                        self.by_phase[url, n].append(statistics.median(self.latencies[url, n][starts[n] :]))
                if self.abort.is_set():
                    side = "Hearth" if url == ours else "llama-server"
                    emit(
                        "llama_server_series",
                        f"stopped in phase {phase}: {side} failed ({self.errors[-1]})",
                        None,
                    )
                    return

    def run(self, port: int) -> None:
        """Wait for llama-server, open the files, warm up, then the measured phases."""
        import requests

        from appliance.processes import wait_http

        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
            self.open_files()
            self.warm_up()
            self.phases()
        except (requests.RequestException, RuntimeError) as exc:  # a cold opening that failed
            self.errors.append(str(exc))
            emit("llama_server_series", f"stopped while the clients opened their files ({exc})", None)


def process_group_stop(proc: subprocess.Popen) -> None:
    """SIGTERM a child started in its own session, SIGKILL if it has not gone in 15 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def yardstick_counters_emit(y: Yardstick, before: dict, theirs_batches: dict | None) -> None:
    """Both sides' decode steps and generated tokens over the series' requests."""
    after = engine_batches()
    emit(  # the series' own decode steps, tokens, moves and moving time (not the earlier series')
        "hearth_engine_batches",
        {k: round(v - before.get(k, 0), 1) for k, v in after.items() if k != "max_batch"} if after else None,
        None,
    )
    emit("llama_server_batches", theirs_batches, None)  # its decode calls over the same requests
    emit(
        "generated_tokens_per_request_hearth_vs_llama_server",
        [round(statistics.mean(y.tokens[y.ours]), 2), round(statistics.mean(y.tokens[y.theirs]), 2)],
        None,
    )


def yardstick_ratios_emit(y: Yardstick) -> None:
    """Each side's p50 and p95 with one and eight clients, the phases' ratios, the pooled ratios."""
    latencies, ours, theirs = y.latencies, y.ours, y.theirs
    for n in (1, 8):
        for name, url in (("hearth", ours), ("llama_server", theirs)):
            values = latencies[url, n]
            emit(f"{name}_{n}_clients_p50_ms", round(statistics.median(values) * 1000, 1), None)
            emit(f"{name}_{n}_clients_p95_ms", round(pct(values, 0.95) * 1000, 1), None)
    for n in (1, 8):  # the two sides' p50 in each phase, side by side: the drift the pooled ratio averages
        pairs = zip(y.by_phase[ours, n], y.by_phase[theirs, n])
        emit(
            f"llama_server_phase_p50_ratios_{n}_clients",
            [round(mine / yard, 3) for mine, yard in pairs],
            None,
        )
    emit(
        "serving_vs_llama_server_single_p50",
        round(statistics.median(latencies[ours, 1]) / statistics.median(latencies[theirs, 1]), 3),
        "<= 1.05",
    )
    emit(
        "serving_vs_llama_server_p50",
        round(statistics.median(latencies[ours, 8]) / statistics.median(latencies[theirs, 8]), 3),
        "<= 1.0",
    )
    emit(
        "serving_vs_llama_server_p95",
        round(pct(latencies[ours, 8], 0.95) / pct(latencies[theirs, 8], 0.95), 3),
        "<= 1.0",
    )


def llama_server_series(b: Bench) -> list[str]:
    """The typing load on Hearth and on llama.cpp's own server, in alternating phases.

    Both serve the same GGUF with the same threads, slots, context per slot, a KV stream per slot
    (llama-server's default with --parallel) and attention kernels (flash attention on or off as
    HEARTH_FLASH_ATTENTION says); the clients send the same prompts
    to the same OpenAI completions body.
    Returns the failed requests' errors."""
    from llama_server import BuildError, llama_server_binary

    try:
        binary = b.args.llama_server or llama_server_binary(log=lambda m: print(m, file=sys.stderr))
    except BuildError as exc:
        emit("llama_server", f"not built: {exc}", None)
        return []
    port = free_port()
    command = llama_server_command(b, binary, port)
    log = (b.env["home"] / "llama-server.log").open("ab")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    y = Yardstick(b, b.url, f"http://127.0.0.1:{port}/v1/completions")
    before = engine_batches()
    try:
        y.run(port)
    finally:
        theirs_batches = llama_server_batches(port)
        process_group_stop(proc)
        log.close()
    emit("llama_server_command", " ".join(["llama-server", *command[1:]]), None)
    yardstick_counters_emit(y, before, theirs_batches)
    if any(not values for values in y.latencies.values()):
        emit("llama_server_series_errors", len(y.errors), "0")
        return y.errors
    yardstick_ratios_emit(y)
    emit("llama_server_series_errors", len(y.errors), "0")
    return y.errors


def replicas_start(b: Bench, halves: list[list[int]]) -> tuple[list[int], str]:
    """Two engine replicas, each pinned to one half of the cores with threads sized to it, and a web
    tier in front of both (HEARTH_ENGINE_URLS). Returns the replicas' ports and the web tier's URL."""
    from appliance.engine_secret import engine_auth_headers
    from appliance.processes import gunicorn_command, manage_command, wait_http

    services = b.env["services"]
    ports = [free_port(), free_port()]
    for i, (port, half) in enumerate(zip(ports, halves, strict=True)):
        services.start(
            f"engine-r{i}",
            manage_command("inference_serve", "--port", str(port), "--threads", str(len(half))),
            env={"HEARTH_ENGINE_CPUS": ",".join(map(str, half)), "HEARTH_ENGINE_PORT": str(port)},
        )
    urls = ",".join(f"http://127.0.0.1:{p}" for p in ports)
    web_port = free_port()
    services.start("web-replicas", gunicorn_command(web_port), env={"HEARTH_ENGINE_URLS": urls})
    for port in ports:
        health = f"http://127.0.0.1:{port}/health"
        ok = lambda h: h.get("status") == "ok"
        wait_http(health, timeout=120, accept=ok, services=services, headers=engine_auth_headers())
    wait_http(f"http://127.0.0.1:{web_port}/ready", timeout=60, services=services)
    return ports, f"http://127.0.0.1:{web_port}/v1/completions"


def replicas_compare(b: Bench, two: str) -> None:
    """Eight typing clients on the one engine and on the two replicas, in two phases (AB, BA)."""
    latencies = {url: [] for url in (b.url, two)}
    errors: list[str] = []
    for phase in range(2):
        for url in (b.url, two) if phase == 0 else (two, b.url):
            ready = threading.Barrier(8)
            run_together(
                b.typing_client,
                [
                    (700 + 10 * phase + n, b.tokens[1 + n], b.args.requests, latencies[url], errors)
                    for n in range(8)
                ],
                ready=ready,
                url=url,
            )
            time.sleep(PAUSE_S)
    emit("one_replica_eight_clients_p95_ms", round(pct(latencies[b.url], 0.95) * 1000, 1), None)
    emit("two_replicas_eight_clients_p95_ms", round(pct(latencies[two], 0.95) * 1000, 1), None)
    emit("two_replicas_vs_one_p95", round(pct(latencies[two], 0.95) / pct(latencies[b.url], 0.95), 3), None)


def replica_failover(b: Bench, two: str, ports: list[int], split: list[int]) -> list[str]:
    """Eight clients typing through the two replicas, one of them SIGKILLed. Returns the failures."""
    services = b.env["services"]
    stop, during, failed = threading.Event(), [], []
    opened = threading.Barrier(9)  # the eight clients have opened their files: they are typing now
    threads = [
        threading.Thread(
            target=b.typing_client,
            args=(800 + n, b.tokens[1 + n], 0, during, failed),
            kwargs={"stop": stop, "ready": opened, "url": two},
        )
        for n in range(8)
    ]
    for t in threads:
        t.start()
    opened.wait(timeout=300)
    time.sleep(3)
    services.stop_one("engine-r1", sig=signal.SIGKILL)
    before = len(during)
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join()
    after = during[before:]
    for name in ("web-replicas", "engine-r0"):  # the cores go back to the next series
        services.stop_one(name)
    emit("replica_failover_requests", len(during) + len(failed), None)
    emit("replica_failover_moved_users", split.count(ports[1]), None)
    emit("replica_failover_p95_after_kill_ms", round(pct(after, 0.95) * 1000, 1) if after else None, None)
    emit("replica_failover_failed_requests", len(failed), "0")
    return failed


def replicas_series(b: Bench) -> list[str]:
    """Two engine replicas behind a web tier against one, then one replica SIGKILLed under load.

    On this one box the two replicas split its cores (each pinned to its own half, threads sized to
    it) where the one replica has them all: the ratio says what a second replica costs in latency
    when it adds no hardware. The failover counts what the eight typing clients see when a replica
    dies mid-load: its users move to the survivor (their next request is a cold prompt there)."""
    from inference.api.engine_client import replica_order
    from inference.models import ApiToken

    services = b.env["services"]
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        emit("replicas", "skipped: one core", None)
        return []
    ports, two = replicas_start(b, [cores[: len(cores) // 2], cores[len(cores) // 2 :]])
    for name in ("engine", "engine-r0"):  # what a replica costs in memory: its own model and KV cache
        status = Path(f"/proc/{services.procs[name].pid}/status")
        if status.exists():
            rss = next(line for line in status.read_text().splitlines() if line.startswith("VmRSS"))
            emit(f"{name.replace('-', '_')}_rss_mb", round(int(rss.split()[1]) / 1024), None)
    pks = list(ApiToken.objects.order_by("pk").values_list("pk", flat=True))[1:9]
    split = [replica_order(f"token-{pk}", [("127.0.0.1", p) for p in ports])[0][1] for pk in pks]
    emit("replica_users", [split.count(p) for p in ports], None)
    replicas_compare(b, two)
    return replica_failover(b, two, ports, split)


def insecure_filter_series(prompt_chars: int) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.insecure_corpus import SAFE, VULNERABLE
    from inference.insecure import insecure_find

    def cut_line(snippet) -> int | None:
        found = insecure_find(snippet.suggestion, snippet.prefix)
        return None if found is None else snippet.suggestion[: found.offset].count("\n")

    caught = sum(cut_line(s) == s.line for s in VULNERABLE)
    flagged = sum(cut_line(s) is not None for s in VULNERABLE)
    false = sum(cut_line(s) is not None for s in SAFE)
    emit("insecure_filter_corpus", {"vulnerable": len(VULNERABLE), "safe": len(SAFE), "false": false}, None)
    emit("insecure_filter_recall", round(caught / len(VULNERABLE), 3), ">= 0.95")
    emit("insecure_filter_precision", round(flagged / max(1, flagged + false), 3), ">= 0.95")
    pairs = []
    for package in ("appliance", "trainer", "inference", "webui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "insecure" in path.parts:  # the rule table: vulnerable examples by design
                continue
            text = path.read_text()
            starts = [i + 1 for i, ch in enumerate(text) if ch == "\n"]
            for k in range(40, len(starts) - 6, 12):
                at = starts[k]
                pairs.append((text[max(0, at - prompt_chars) : at], text[at : starts[k + 6]]))
    costs, hits = [], 0
    for prefix, suggestion in pairs[:4000]:
        started = time.perf_counter()
        hits += insecure_find(suggestion, prefix) is not None
        costs.append((time.perf_counter() - started) * 1000)
    emit("insecure_filter_suggestions", {"measured": len(costs), "cut": hits}, None)
    emit("insecure_filter_p50_ms", round(pct(costs, 0.5), 4), "<= 1.0")
    emit("insecure_filter_p95_ms", round(pct(costs, 0.95), 4), None)


SERIES = ("engine", "gateway", "cache", "concurrency", "context", "hotswap", "replicas", "llama-server")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", choices=["smollm2", "micro"], default="smollm2", help="Which base GGUF to serve."
    )
    parser.add_argument(
        "--gguf", type=Path, help="Serve this GGUF instead (registered as a prefix-only base)."
    )
    parser.add_argument(
        "--slots", type=int, help="Engine slots (batched sequences); default HEARTH_ENGINE_SLOTS."
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="llama.cpp threads.")
    parser.add_argument("--ctx", type=int, default=2048, help="Context window.")
    parser.add_argument(
        "--requests",
        type=int,
        default=12,
        help="Requests per measured series (the llama-server series: --yardstick-phases x --yardstick-rounds).",
    )
    parser.add_argument("--max-tokens", type=int, default=16, help="Tokens generated per request.")
    parser.add_argument("--prompt-chars", type=int, default=1200, help="Size of each prompt in characters.")
    parser.add_argument(
        "--yardstick-phases",
        type=int,
        default=12,
        help="Phases of the llama-server series, alternating which side goes first (more: steadier ratios).",
    )
    parser.add_argument(
        "--yardstick-rounds",
        type=int,
        default=4,
        help="Requests per client in each phase of the llama-server series.",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the instance directory.")
    parser.add_argument(
        "--llama-server",
        type=Path,
        help="A llama-server binary to compare with (default: built from llama-cpp-python's source, cached).",
    )
    parser.add_argument(
        "--only-filters",
        action="store_true",
        help="Measure only the insecure-code response filter, offline (no engine or web server).",
    )
    parser.add_argument(
        "--series",
        nargs="+",
        choices=SERIES,
        default=list(SERIES),
        help="Which series to run (default: all of them, in this order).",
    )
    return parser.parse_args()


def main() -> int:
    args = arguments()
    if args.only_filters:
        insecure_filter_series(args.prompt_chars)
        return 0
    # Stopped from outside (timeout, Ctrl-C): still stop the engine and web server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = setup(args)
    import requests
    from django.conf import settings

    from appliance.llm.runtime import flash_attention
    from appliance.processes import Services, engine_wait, wait_http
    from inference.auth import token_create

    tokens = [token_create(username=f"bench{i}")[1] for i in range(9)]
    web_port = free_port()
    services = Services()
    try:
        services.start_engine()
        services.start_web(web_port)
        engine_wait(timeout=120, accept=lambda h: h.get("status") == "ok", services=services)
        wait_http(f"http://127.0.0.1:{web_port}/ready", timeout=60, services=services)
        env["services"] = services
        b = Bench(args, env, tokens, f"http://127.0.0.1:{web_port}/v1/completions")
        emit("model", b.base.slug, None)
        emit(
            "config",
            {
                "slots": settings.HEARTH_ENGINE_SLOTS,
                "threads": args.threads,
                "max_tokens": args.max_tokens,
                "prompt_chars": args.prompt_chars,
                "cores": os.cpu_count(),
                "flash_attention": flash_attention(),
            },
            None,
        )
        run = set(args.series)
        if "engine" in run:
            engine_only_series(b)
        session = requests.Session()
        if "gateway" in run:
            gateway_vs_direct_series(b, session)
        if "cache" in run:
            cache_series(b, session)
        errors8 = concurrency_series(b) if "concurrency" in run else []
        if "context" in run:
            context_series(b)
        swap_errors = hotswap_series(b) if "hotswap" in run else []
        replica_errors = replicas_series(b) if "replicas" in run else []
        yardstick_errors = llama_server_series(b) if "llama-server" in run else []
        errors = swap_errors + errors8 + replica_errors + yardstick_errors
        if errors:
            print(json.dumps({"errors": errors[:5]}), file=sys.stderr)
    finally:
        services.stop()
        if not args.keep:
            shutil.rmtree(env["home"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
