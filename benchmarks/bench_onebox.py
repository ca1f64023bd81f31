"""`make bench-onebox`: the engine beside a fine-tune and beside an evaluation on one box, as
`manage.py serve` and the appliance's units run them (disjoint CPU sets), and, for contrast, sharing
every core.

For each layout, on the same base (SmolLM2-135M-Instruct by default, `--model micro` for a quick check):
one typing client through the HTTP API while the worker is idle; a LoRA run of the base while nothing is
served, then both at once (the client types from the run's first step to its last); the evaluation
Hearth runs after each training (the base's GGUF scored by llama.cpp on the dataset's held-out lines,
spans and, with HEARTH_CONTEXT_EVAL, repository context) while nothing is served, then both at once.
Training and evaluation each run in a child process pinned to the worker's cores. Prints:

- serving_p95_during_training_vs_idle: the client's p95 while the run trains over its p95 alone;
- training_tps_while_serving_vs_idle: the run's tokens/s while the client types over its tokens/s alone;
- serving_p95_during_evaluation_vs_idle: the client's p95 while the evaluation scores over its p95 alone;
- evaluation_lines_per_s_while_serving_vs_alone: held-out tasks scored per second (a line or a span,
  every arm counted, loading and perplexity included) while the client types over the same alone;
- the same four for the shared-cores layout (`..._shared_cores`), which is what disjoint sets avoid.

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

# The worker's job in a child process: pinned as the worker pins itself at start (appliance.apps),
# its OpenMP pool sized to that set.
CHILD = """
import os, sys
cpus = {cpus!r}
if cpus:
    os.sched_setaffinity(0, cpus)
os.environ["OMP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
sys.path.insert(0, {root!r})
from {module} import main
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


class Job:
    """One worker job (`module`'s `main([spec.json])`) in a child process pinned to `cpus`. It has
    begun its measured work once its events file shows `marker`; its summary is a JSON file."""

    def __init__(
        self,
        module: str,
        cpus: frozenset[int] | None,
        folder: Path,
        spec: dict,
        *,
        marker: str,
        summary: Path,
    ):
        self.events, self.marker, self.summary_file = Path(spec["events"]), marker, summary
        spec_file = folder / "spec.json"
        spec_file.write_text(json.dumps(spec))
        code = CHILD.format(
            cpus=set(cpus) if cpus else None, root=str(ROOT), module=module, spec=str(spec_file)
        )
        self.log = (folder / "job.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )

    def started(self) -> bool:
        return self.events.exists() and self.marker in self.events.read_text()

    def wait(self) -> dict:
        code = self.proc.wait(timeout=3600)
        self.log.close()
        if code != 0:
            raise RuntimeError(f"the worker's job exited with {code}; see {self.log.name}")
        return json.loads(self.summary_file.read_text())


def training_start(b: Bench, cpus: frozenset[int] | None, folder: Path) -> Job:
    """A LoRA run of the base; it has begun once it takes its first step (model loaded, data packed)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "hf_path": b.base.hf_path,
        "dataset_dir": str(dataset_write(folder / "dataset")),
        "out_dir": str(folder / "run"),
        "events": str(folder / "events.jsonl"),
        "settings": {
            "max_steps": b.args.steps,
            "seq_len": 256,
            "grad_accum": 1,
            "eval_sequences": 2,
            "eval_every_steps": 10_000,
            "warmup_steps": 1,
            "context_rate": 0.0,
        },
    }
    summary = folder / "run" / "summary.json"
    return Job("trainer.training.launch", cpus, folder, spec, marker='"progress"', summary=summary)


def evaluation_start(b: Bench, cpus: frozenset[int] | None, folder: Path) -> Job:
    """The evaluation of the base's GGUF on the bench dataset (`b.env["dataset"]`, with its code index);
    it has begun once the harness says it is scoring."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = b.env["dataset"]
    spec = {
        "gguf": b.base.gguf_path,
        "fim_format": b.base.fim_format if b.base.can_infill else "",
        "dataset_dir": str(dataset),
        "index": str(dataset / "context.sqlite3"),
        "max_tasks": b.args.eval_tasks,
        "max_span_tasks": b.args.eval_spans,
        "events": str(folder / "events.jsonl"),
        "summary": str(folder / "summary.json"),
    }
    return Job(
        "benchmarks.onebox_evaluation", cpus, folder, spec, marker="scoring", summary=folder / "summary.json"
    )


def evaluation_dataset(home: Path) -> Path:
    """The bench's dataset folder once more, with the code index a dataset build writes beside it."""
    from trainer.context.index import index_build

    folder = dataset_write(home / "evaluation-dataset")
    with (folder / "train.jsonl").open() as f:
        index_build(folder / "context.sqlite3", [json.loads(line) for line in f])
    return folder


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


def idle_latencies(b: Bench) -> list[float]:
    """`--requests` keystrokes of one typing client while the worker is idle."""
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
    return idle


def beside_typing(b: Bench, token: str, n: int, start) -> tuple[dict, list[float]]:
    """The job `start()` starts with a client typing beside it: the job's summary, and the client's
    latencies from the job's measured start to its end."""
    during: list[float] = []
    stop = threading.Event()
    job = start()
    client = threading.Thread(
        target=typing, args=(b, token, n, during, stop, lambda: job.started() and job.proc.poll() is None)
    )
    client.start()
    try:
        return job.wait(), during
    finally:
        stop.set()
        client.join()


def layout_measure(b: Bench, name: str, engine_cpus: str, worker_cpus: str, web_port: int) -> dict:
    from appliance.cpusets import cpu_set_for, llama_threads
    from appliance.processes import Services, engine_wait, manage_command, wait_http

    engine_set = cpu_set_for("engine", engine=engine_cpus, worker=worker_cpus)
    worker_set = cpu_set_for("worker", engine=engine_cpus, worker=worker_cpus)
    threads = llama_threads(len(engine_set) if engine_set else None)["n_threads"]
    services = Services()
    env = {"HEARTH_ENGINE_CPUS": engine_cpus, "HEARTH_ENGINE_THREADS": str(threads)}
    home = b.env["home"]
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
        idle = idle_latencies(b)
        training_alone = training_start(b, worker_set, home / f"{name}-training-alone").wait()
        training_both, during_training = beside_typing(
            b, b.tokens[1], 301, lambda: training_start(b, worker_set, home / f"{name}-training-both")
        )
        evaluation_alone = evaluation_start(b, worker_set, home / f"{name}-evaluation-alone").wait()
        evaluation_both, during_evaluation = beside_typing(
            b, b.tokens[2], 302, lambda: evaluation_start(b, worker_set, home / f"{name}-evaluation-both")
        )
    finally:
        services.stop()
    return {
        "idle_p95": pct(idle, 0.95),
        "during_p95": pct(during_training, 0.95) if during_training else float("nan"),
        "during_requests": len(during_training),
        "tps_alone": training_alone["tokens_per_s"],
        "tps_serving": training_both["tokens_per_s"],
        "evaluation": evaluation_alone,
        "during_evaluation_p95": pct(during_evaluation, 0.95) if during_evaluation else float("nan"),
        "during_evaluation_requests": len(during_evaluation),
        "lines_per_s_alone": evaluation_alone["lines_per_s"],
        "lines_per_s_serving": evaluation_both["lines_per_s"],
    }


def results_emit(r: dict, suffix: str) -> None:
    """One layout's figures; the goals are the disjoint layout's (`suffix` empty)."""
    emit(f"serving_idle_p95_ms{suffix}", round(r["idle_p95"] * 1000, 1), None)
    emit(f"serving_during_training_p95_ms{suffix}", round(r["during_p95"] * 1000, 1), None)
    emit(f"serving_requests_during_training{suffix}", r["during_requests"], None)
    emit(f"training_tps_alone{suffix}", r["tps_alone"], None)
    emit(f"training_tps_while_serving{suffix}", r["tps_serving"], None)
    emit(f"serving_during_evaluation_p95_ms{suffix}", round(r["during_evaluation_p95"] * 1000, 1), None)
    emit(f"serving_requests_during_evaluation{suffix}", r["during_evaluation_requests"], None)
    emit(f"evaluation_lines_per_s_alone{suffix}", r["lines_per_s_alone"], None)
    emit(f"evaluation_lines_per_s_while_serving{suffix}", r["lines_per_s_serving"], None)
    ratios = {
        "serving_p95_during_training_vs_idle": (r["during_p95"] / r["idle_p95"], "<= 1.3"),
        "training_tps_while_serving_vs_idle": (r["tps_serving"] / r["tps_alone"], ">= 0.8"),
        "serving_p95_during_evaluation_vs_idle": (r["during_evaluation_p95"] / r["idle_p95"], "<= 1.3"),
        "evaluation_lines_per_s_while_serving_vs_alone": (
            r["lines_per_s_serving"] / r["lines_per_s_alone"],
            ">= 0.8",
        ),
    }
    for metric, (value, goal) in ratios.items():
        emit(f"{metric}{suffix}", round(value, 3), None if suffix else goal)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["smollm2", "micro"], default="smollm2")
    parser.add_argument("--requests", type=int, default=20, help="Requests measured while idle.")
    parser.add_argument("--steps", type=int, default=12, help="Optimizer steps per training run.")
    parser.add_argument(
        "--eval-tasks",
        type=int,
        help="Most held-out lines per evaluation (default: evaluation_run's 300; 8 with --model micro).",
    )
    parser.add_argument(
        "--eval-spans",
        type=int,
        help="Most multi-line spans per evaluation (default: evaluation_run's 40; 2 with --model micro).",
    )
    parser.add_argument("--max-tokens", type=int, default=16, help="Tokens generated per request.")
    parser.add_argument("--prompt-chars", type=int, default=1200, help="Size of each prompt in characters.")
    parser.add_argument("--ctx", type=int, default=2048, help="Context window.")
    parser.add_argument("--keep", action="store_true", help="Keep the instance directory.")
    args = parser.parse_args()
    micro = args.model == "micro"  # a quick check: a few lines, where the shared cores crawl
    args.eval_tasks = args.eval_tasks if args.eval_tasks is not None else 8 if micro else 300
    args.eval_spans = args.eval_spans if args.eval_spans is not None else 2 if micro else 40
    sys.path.insert(0, str(ROOT))
    from appliance.cpusets import llama_threads

    # setup() gives the engine this process's cores (its CPU set); each layout then sets its own.
    args.gguf, args.slots, args.threads = None, None, llama_threads()["n_threads"]
    return args


def main() -> int:
    args = arguments()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = setup(args)
    from inference.auth import token_create

    tokens = [token_create(username=f"onebox{i}")[1] for i in range(3)]
    web_port = free_port()
    env["dataset"] = evaluation_dataset(env["home"])
    b = Bench(args, env, tokens, f"http://127.0.0.1:{web_port}/v1/completions")
    emit("model", b.base.slug, None)
    emit("cores", len(os.sched_getaffinity(0)), None)
    try:
        results = {
            "disjoint": layout_measure(b, "disjoint", "auto", "auto", web_port),
            "shared": layout_measure(b, "shared", "all", "all", web_port),
        }
        emit("evaluation_workload", results["disjoint"]["evaluation"], None)
        for name, r in results.items():
            results_emit(r, "" if name == "disjoint" else "_shared_cores")
    finally:
        if not args.keep:
            shutil.rmtree(env["home"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
