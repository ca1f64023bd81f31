"""`make bench-onebox`: the engine and a fine-tune on one box, as `manage.py serve` and the appliance's
units run them (disjoint CPU sets), and, for contrast, sharing every core.

For each layout, on the same base (SmolLM2-135M-Instruct by default, `--model micro` for a quick check):
one typing client through the HTTP API while nothing trains, a LoRA run of the base while nothing is
served, then both at once (the client types from the run's first step to its last). Prints:

- serving_p95_during_training_vs_idle: the client's p95 while the run trains over its p95 alone;
- training_tps_while_serving_vs_idle: the run's tokens/s while the client types over its tokens/s alone;
- the same two for the shared-cores layout (`..._shared_cores`), which is what disjoint sets avoid.

"Idle" is measured in the same layout: with disjoint sets on two cores the engine has one core either
way, and the ratio says what the other job costs it, not what the split costs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_serving import ROOT, Bench, emit, free_port, keystrokes, pct, setup

CHILD = """
import os, sys
cpus = {cpus!r}
if cpus:
    os.sched_setaffinity(0, cpus)  # what the worker does at start (appliance.apps)
os.environ["OMP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
sys.path.insert(0, {root!r})
from trainer.training.launch import main
sys.exit(main([{spec!r}]))
"""


def dataset_write(folder: Path) -> Path:
    """This repository's own Python files as a dataset folder (train.jsonl, heldout.jsonl)."""
    files = [
        {"path": str(f.relative_to(ROOT)), "language": "python", "text": f.read_text()}
        for layer in ("appliance", "trainer", "inference")
        for f in sorted((ROOT / layer).rglob("*.py"))
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(f) + "\n" for f in files[2:]))
    (folder / "heldout.jsonl").write_text("".join(json.dumps(f) + "\n" for f in files[:2]))
    return folder


class Training:
    """One LoRA run of the base in a child process pinned to the worker's cores."""

    def __init__(self, b: Bench, cpus: frozenset[int] | None, folder: Path, steps: int):
        folder.mkdir(parents=True, exist_ok=True)
        self.events = folder / "events.jsonl"
        spec = folder / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "hf_path": b.base.hf_path,
                    "dataset_dir": str(dataset_write(folder / "dataset")),
                    "out_dir": str(folder / "run"),
                    "events": str(self.events),
                    "settings": {
                        "max_steps": steps,
                        "seq_len": 256,
                        "grad_accum": 1,
                        "eval_sequences": 2,
                        "eval_every_steps": 10_000,
                        "warmup_steps": 1,
                        "context_rate": 0.0,
                    },
                }
            )
        )
        code = CHILD.format(cpus=set(cpus) if cpus else None, root=str(ROOT), spec=str(spec))
        self.summary_file = folder / "run" / "summary.json"
        self.log = (folder / "training.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )

    def started(self) -> bool:
        """True once the run has taken its first step (the model is loaded, the data packed)."""
        return self.events.exists() and '"progress"' in self.events.read_text()

    def wait(self) -> dict:
        code = self.proc.wait(timeout=3600)
        self.log.close()
        if code != 0:
            raise RuntimeError(f"the training run exited with {code}; see {self.log.name}")
        return json.loads(self.summary_file.read_text())


def typing(b: Bench, token: str, n: int, latencies: list, stop: threading.Event, count) -> None:
    """A developer typing until `stop`; a latency is kept while `count()` says so."""
    import requests

    sess = requests.Session()
    prompts = keystrokes(n, b.args.prompt_chars)
    b.call(sess, token, next(prompts))  # opening the file: a cold prompt, not counted
    for prompt in prompts:
        if stop.is_set():
            return
        elapsed = b.call(sess, token, prompt)[0]
        if count():
            latencies.append(elapsed)


def layout_measure(b: Bench, name: str, engine_cpus: str, worker_cpus: str, web_port: int) -> dict:
    from appliance.cpusets import cpu_set_for
    from appliance.processes import Services, engine_wait, manage_command, wait_http

    engine_set = cpu_set_for("engine", engine=engine_cpus, worker=worker_cpus)
    worker_set = cpu_set_for("worker", engine=engine_cpus, worker=worker_cpus)
    threads = len(engine_set) if engine_set else os.cpu_count() or 1
    services = Services()
    env = {"HEARTH_ENGINE_CPUS": engine_cpus, "HEARTH_ENGINE_THREADS": str(threads)}
    try:
        services.start("engine", manage_command("inference_serve"), env=env)
        services.start_web(web_port)
        engine_wait(timeout=120, accept=lambda h: h.get("status") == "ok", services=services)
        wait_http(f"http://127.0.0.1:{web_port}/ready", timeout=60, services=services)
        emit(
            f"layout_{name}",
            {
                "engine_cpus": sorted(engine_set) if engine_set else "all",
                "worker_cpus": sorted(worker_set) if worker_set else "all",
                "engine_threads": threads,
            },
            None,
        )
        idle: list[float] = []
        stop = threading.Event()
        client = threading.Thread(
            target=typing, args=(b, b.tokens[0], 300, idle, stop, lambda: len(idle) < b.args.requests)
        )
        client.start()
        while len(idle) < b.args.requests and client.is_alive():
            time.sleep(0.1)
        stop.set()
        client.join()

        alone = Training(b, worker_set, b.env["home"] / f"{name}-alone", b.args.steps).wait()

        during: list[float] = []
        stop = threading.Event()
        training = Training(b, worker_set, b.env["home"] / f"{name}-both", b.args.steps)
        client = threading.Thread(
            target=typing,
            args=(
                b,
                b.tokens[1],
                301,
                during,
                stop,
                lambda: training.started() and training.proc.poll() is None,
            ),
        )
        client.start()
        try:
            both = training.wait()
        finally:
            stop.set()
            client.join()
    finally:
        services.stop()
    return {
        "idle_p95": pct(idle, 0.95),
        "during_p95": pct(during, 0.95) if during else float("nan"),
        "during_requests": len(during),
        "tps_alone": alone["tokens_per_s"],
        "tps_serving": both["tokens_per_s"],
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["smollm2", "micro"], default="smollm2")
    parser.add_argument("--requests", type=int, default=20, help="Requests measured while idle.")
    parser.add_argument("--steps", type=int, default=12, help="Optimizer steps per training run.")
    parser.add_argument("--max-tokens", type=int, default=16, help="Tokens generated per request.")
    parser.add_argument("--prompt-chars", type=int, default=1200, help="Size of each prompt in characters.")
    parser.add_argument("--ctx", type=int, default=2048, help="Context window.")
    parser.add_argument("--keep", action="store_true", help="Keep the instance directory.")
    args = parser.parse_args()
    args.gguf, args.slots, args.threads = None, None, os.cpu_count() or 2
    return args


def main() -> int:
    args = arguments()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = setup(args)
    from inference.auth import token_create

    tokens = [token_create(username=f"onebox{i}")[1] for i in range(2)]
    web_port = free_port()
    b = Bench(args, env, tokens, f"http://127.0.0.1:{web_port}/v1/completions")
    emit("model", b.base.slug, None)
    emit("cores", len(os.sched_getaffinity(0)), None)
    try:
        results = {
            "disjoint": layout_measure(b, "disjoint", "auto", "auto", web_port),
            "shared": layout_measure(b, "shared", "all", "all", web_port),
        }
        for name, r in results.items():
            suffix = "" if name == "disjoint" else "_shared_cores"
            emit(f"serving_idle_p95_ms{suffix}", round(r["idle_p95"] * 1000, 1), None)
            emit(f"serving_during_training_p95_ms{suffix}", round(r["during_p95"] * 1000, 1), None)
            emit(f"serving_requests_during_training{suffix}", r["during_requests"], None)
            emit(f"training_tps_alone{suffix}", r["tps_alone"], None)
            emit(f"training_tps_while_serving{suffix}", r["tps_serving"], None)
            emit(
                f"serving_p95_during_training_vs_idle{suffix}",
                round(r["during_p95"] / r["idle_p95"], 3),
                "<= 1.3" if not suffix else None,
            )
            emit(
                f"training_tps_while_serving_vs_idle{suffix}",
                round(r["tps_serving"] / r["tps_alone"], 3),
                ">= 0.8" if not suffix else None,
            )
    finally:
        if not args.keep:
            shutil.rmtree(env["home"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
