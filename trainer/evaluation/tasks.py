"""Line-completion tasks from held-out files, sampled deterministically."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MIN_NON_WHITESPACE = 8


@dataclass(frozen=True)
class LineTask:
    path: str
    language: str
    line_no: int
    prefix: str  # text before the masked line (ends with a newline)
    target: str  # the masked line, without its newline
    suffix: str  # text after the masked line (starts with its newline)
    n_lines: int = 1


def _score(path: str, line_no: int, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{path}:{line_no}".encode()).digest()[:8], "big")


def line_tasks_build(
    files: list[dict], *, max_tasks: int = 300, seed: int = 0, max_per_file: int = 60
) -> list[LineTask]:
    """Every non-trivial line (>= 8 non-whitespace characters) is a candidate; a hash of
    (seed, path, line) picks which, so the same dataset always yields the same tasks."""
    candidates = []
    for record in files:
        lines = record["text"].split("\n")
        offsets, pos = [], 0
        for line in lines:
            offsets.append(pos)
            pos += len(line) + 1
        per_file = []
        for i, line in enumerate(lines):
            if i == 0 or len("".join(line.split())) < MIN_NON_WHITESPACE:
                continue
            per_file.append((_score(record["path"], i, seed), record, i, offsets[i]))
        per_file.sort(key=lambda c: c[0])
        candidates.extend(per_file[:max_per_file])
    candidates.sort(key=lambda c: c[0])
    chosen = candidates[:max_tasks]
    # Ordered by file and line, so successive prompts share a prefix and reuse the KV cache.
    chosen.sort(key=lambda c: (c[1]["path"], c[2]))
    tasks = []
    for _, record, i, start in chosen:
        text = record["text"]
        lines = text.split("\n")
        end = start + len(lines[i])
        tasks.append(
            LineTask(record["path"], record.get("language", ""), i + 1, text[:start], lines[i], text[end:])
        )
    return tasks


def span_tasks_build(
    files: list[dict], *, max_tasks: int = 60, seed: int = 0, span: tuple[int, int] = (2, 5)
) -> list[LineTask]:
    """Multi-line spans (2–5 whole lines starting at a non-trivial line), for fill-in-the-middle."""
    singles = line_tasks_build(files, max_tasks=max_tasks, seed=seed + 1)
    by_path = {f["path"]: f["text"] for f in files}
    tasks = []
    for t in singles:
        lines = by_path[t.path].split("\n")
        start = t.line_no - 1
        n = span[0] + _score(t.path, t.line_no, seed + 2) % (span[1] - span[0] + 1)
        n = min(n, len(lines) - start)
        if n < 2:
            continue
        prefix = "\n".join(lines[:start]) + "\n"
        target = "\n".join(lines[start : start + n])
        suffix = "\n" + "\n".join(lines[start + n :])
        tasks.append(LineTask(t.path, t.language, t.line_no, prefix, target, suffix, n_lines=n))
    return tasks
