"""`make bench-context`: build the code index of 10,000 synthetic source files and time retrieval.

The files are generated (modules of functions and classes calling each other by made-up
identifiers, so BM25 has real work: shared names, common words, long tails). Queries are the last
30 lines before a random line of a random file, as evaluation and serving ask them.
Prints one JSON object per line: metric, value, goal.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.context.index import ContextIndex, index_build, query_text

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
    rng = random.Random(0)
    files = [_module(rng, i) for i in range(FILES)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "context.sqlite"
        stats = index_build(path, files)
        emit("context_index_files", stats["files"])
        emit("context_index_chunks", stats["chunks"])
        emit("context_index_build_s", stats["seconds"])
        emit("context_index_mb", round(stats["bytes"] / 2**20, 1))
        index = ContextIndex(path)
        times, found = [], 0
        for _ in range(QUERIES):
            record = rng.choice(files)
            lines = record["text"].split("\n")
            prefix = "\n".join(lines[: rng.randrange(3, len(lines))])
            started = time.perf_counter()
            found += bool(index.search(query_text(prefix), k=4, exclude_path=record["path"]))
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        emit("retrieval_p50_ms", round(statistics.median(times), 2), "<= 10")
        emit("retrieval_p95_ms", round(times[int(0.95 * len(times))], 2))
        emit("retrieval_found_share", round(found / QUERIES, 3))


if __name__ == "__main__":
    main()
