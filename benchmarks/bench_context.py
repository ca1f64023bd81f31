"""`make bench-context`: build the code index of 10,000 synthetic source files and time retrieval.

The files are generated (modules of functions and classes calling each other by made-up
identifiers, so BM25 has real work: shared names, common words, long tails). Queries are the last
lines before a random line of a random file, as evaluation and serving ask them, for chunks and for
windows. Prints one JSON object per line: metric, value, goal.

`--em GGUF` (or `--em micro`, a smoke check with the bootstrap micro model) instead scores exact
match of that base on held-out lines of Hearth's own Python sources (one file in ten held out, the
rest indexed), prefix-only and greedy like the evaluation harness, in each arm: no context, chunks
(definitions, last 30 lines as query), windows ranked by BM25, windows re-ranked by Jaccard, and
the Jaccard windows asked a second time with the model's first line (RepoCoder's iteration).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.context.index import (
    QUERY_LINES,
    WINDOW_QUERY_LINES,
    ContextIndex,
    context_snippets,
    cursor_query,
    index_build,
    query_text,
    snippets_pick,
)

ROOT = Path(__file__).resolve().parent.parent
ARMS = ("none", "chunks", "windows_bm25", "windows_jaccard", "windows_jaccard_round2")

FILES = 10_000
QUERIES = 400
WORDS = (
    "account",
    "ledger",
    "balance",
    "user",
    "session",
    "token",
    "cache",
    "render",
    "widget",
    "order",
    "invoice",
    "payment",
    "config",
    "load",
    "parse",
    "store",
    "queue",
    "event",
    "report",
    "total",
    "item",
    "price",
    "tax",
    "email",
    "address",
    "retry",
    "timeout",
    "client",
    "server",
    "request",
)


def emit(metric: str, value, goal=None) -> None:
    print(json.dumps({"metric": metric, "value": value, "goal": goal}), flush=True)


def _name(rng: random.Random) -> str:
    return "_".join(rng.sample(WORDS, 2)) + f"_{rng.randrange(3000)}"


def _module(rng: random.Random, i: int) -> dict:
    lines = [f'"""Module {i}."""', "from __future__ import annotations", ""]
    for _ in range(rng.randint(3, 9)):
        name = _name(rng)
        if rng.random() < 0.3:
            lines += [f"class {name.title().replace('_', '')}:", f"    def {_name(rng)}(self, {_name(rng)}):"]
            indent = "        "
        else:
            lines.append(f"def {name}({_name(rng)}, {_name(rng)}):")
            indent = "    "
        for _ in range(rng.randint(2, 12)):
            lines.append(f"{indent}{_name(rng)} = {_name(rng)}({_name(rng)}, {rng.randrange(100)})")
        lines += [f"{indent}return {_name(rng)}", "", ""]
    return {
        "repo": "synthetic",
        "path": f"pkg{i % 50}/mod_{i}.py",
        "language": "python",
        "text": "\n".join(lines),
    }


def main() -> None:
    if len(sys.argv) > 1:
        em_main(sys.argv[1:])
        return
    rng = random.Random(0)
    files = [_module(rng, i) for i in range(FILES)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "context.sqlite"
        stats = index_build(path, files)
        emit("context_index_files", stats["files"])
        emit("context_index_chunks", stats["chunks"])
        emit("context_index_windows", stats["windows"])
        emit("context_index_build_s", stats["seconds"])
        emit("context_index_mb", round(stats["bytes"] / 2**20, 1))
        index = ContextIndex(path)
        prefixes = []
        for _ in range(QUERIES):
            record = rng.choice(files)
            lines = record["text"].split("\n")
            prefixes.append((record["path"], "\n".join(lines[: rng.randrange(3, len(lines))])))
        for name, search, lines in (
            ("retrieval", index.search, QUERY_LINES),
            ("windows_retrieval", index.search_windows, WINDOW_QUERY_LINES),
        ):
            times, found = [], 0
            for path, prefix in prefixes:
                started = time.perf_counter()
                found += bool(search(query_text(prefix, lines), k=4, exclude_path=path))
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            emit(f"{name}_p50_ms", round(statistics.median(times), 2), "<= 10")
            emit(f"{name}_p95_ms", round(times[int(0.95 * len(times))], 2))
            emit(f"{name}_found_share", round(found / QUERIES, 3))


def em_dataset(heldout_every: int = 10) -> tuple[list[dict], list[dict]]:
    """Hearth's own Python sources split by file: (training files, held-out files)."""
    train, heldout = [], []
    for layer in ("appliance", "trainer", "inference"):
        for f in sorted((ROOT / layer).rglob("*.py")):
            path = str(f.relative_to(ROOT))
            row = {"repo": "hearth", "path": path, "language": "python", "text": f.read_text()}
            digest = int(hashlib.sha1(path.encode()).hexdigest(), 16)
            (heldout if digest % heldout_every == 0 else train).append(row)
    return train, heldout


def em_snippets(index: ContextIndex, task, arm: str, draft: str = "") -> list[tuple[str, str]] | None:
    """The context of one arm for a held-out line (`draft`: the first round's line, for round two)."""
    rules = {"filepath": task.path, "language": task.language}
    if arm == "none":
        return None
    if arm == "chunks":
        return context_snippets(index, task.prefix, retrieval="chunks", **rules)
    query = query_text(cursor_query(task.prefix, WINDOW_QUERY_LINES) + draft, WINDOW_QUERY_LINES)
    found = index.search_windows(
        query, k=4, exclude_path=task.path, language=task.language, rerank=arm != "windows_bm25"
    )
    return snippets_pick(found, budget_chars=2400)


def em_arm(completer, index: ContextIndex, tasks: list, arm: str, prompt_tokens: int) -> dict:
    """Exact match and seconds per line of one arm on `tasks`."""
    from appliance.llm.sampling import SamplingOptions
    from trainer.evaluation.metrics import exact_match, wilson_interval

    options = SamplingOptions(
        max_tokens=48, temperature=0.0, single_line=True, max_lines=1, max_prompt_tokens=prompt_tokens
    )
    hits, started = [], time.perf_counter()
    for task in tasks:
        context = em_snippets(index, task, arm.removesuffix("_round2"))
        text = completer.complete(task.prefix, None, options, context=context, filepath=task.path).text
        if arm.endswith("_round2"):
            context = em_snippets(index, task, arm.removesuffix("_round2"), draft=text)
            text = completer.complete(task.prefix, None, options, context=context, filepath=task.path).text
        hits.append(int(exact_match(text, task.target)))
    lo, hi = wilson_interval(sum(hits), len(hits))
    return {
        "exact_match": round(sum(hits) / len(hits), 4),
        "ci95": [round(lo, 3), round(hi, 3)],
        "s_per_line": round((time.perf_counter() - started) / len(tasks), 3),
        "hits": hits,
    }


def em_model(name: str, folder: Path) -> Path:
    """The GGUF to score: a given file, or the bootstrap micro model built into `folder`."""
    if name != "micro":
        return Path(name)
    from trainer.basemodels.bootstrap import micro_model_build
    from trainer.tools.gguf import gguf_convert

    micro_model_build(folder / "hf", seed=0)
    return gguf_convert(folder / "hf", folder / "micro.gguf", outtype="f16", log=lambda m: None)


def em_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Exact match of a base with each kind of context.")
    parser.add_argument("--em", required=True, help="A GGUF file, or 'micro' for a smoke check.")
    parser.add_argument("--tasks", type=int, default=150, help="Held-out lines to score.")
    parser.add_argument("--prompt-tokens", type=int, default=1024, help="Prompt budget, as evaluation's.")
    parser.add_argument("--arms", default=",".join(ARMS), help="Comma-separated arms to score.")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads.")
    args = parser.parse_args(argv)
    from appliance.llm.prompt import Completer
    from appliance.llm.runtime import llama_open
    from trainer.evaluation.tasks import line_tasks_build

    train, heldout = em_dataset()
    tasks = line_tasks_build(heldout, max_tasks=args.tasks, seed=0)
    emit("em_train_files", len(train))
    emit("em_heldout_lines", len(tasks))
    with tempfile.TemporaryDirectory() as tmp:
        stats = index_build(Path(tmp) / "context.sqlite", train)
        index = ContextIndex(Path(tmp) / "context.sqlite")
        gguf = em_model(args.em, Path(tmp))
        llm = llama_open(gguf, n_ctx=args.prompt_tokens + 64, n_threads=args.threads, seed=0)
        completer = Completer(llm, None)
        emit("em_index", {k: stats[k] for k in ("chunks", "windows")})
        results = {}
        for arm in args.arms.split(","):
            results[arm] = em_arm(completer, index, tasks, arm, args.prompt_tokens)
            emit(f"em_{arm}", {k: v for k, v in results[arm].items() if k != "hits"})
        if {"chunks", "windows_jaccard"} <= results.keys():
            pairs = list(zip(results["chunks"]["hits"], results["windows_jaccard"]["hits"]))
            emit("em_windows_jaccard_vs_chunks_won_lost", [pairs.count((0, 1)), pairs.count((1, 0))])


if __name__ == "__main__":
    main()
