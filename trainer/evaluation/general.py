"""The general-code arm: held-out lines from code the customer did not write, so the gate can see a
custom model that forgot how to complete ordinary code while it learned the customer's.

The code is the Python standard library of the interpreter Hearth runs on: it ships on every
appliance, nobody's repository holds it, and the same interpreter always gives the same sample.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path

from trainer.evaluation.harness import Candidate, line_tasks_score
from trainer.evaluation.tasks import LineTask, line_tasks_build

GENERAL_FILES = 24
GENERAL_TASKS = 120
GENERAL_MAX_BYTES = 60_000
GENERAL_MIN_BYTES = 2_000
# Tests, the IDLE editor, demos and generated codec tables are not the code people write;
# third-party packages are not the standard library and differ from box to box.
_SKIPPED_DIRS = {
    "test",
    "tests",
    "idlelib",
    "turtledemo",
    "lib2to3",
    "encodings",
    "site-packages",
    "dist-packages",
}
_SEED = "hearth-general"
PATH_PREFIX = "python-stdlib/"


def general_source() -> str:
    """The sample's source, as the report and the gate's sentence name it."""
    return f"the Python {sys.version_info.major}.{sys.version_info.minor} standard library"


def _text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def general_files(
    *,
    stdlib: Path | None = None,
    exclude_texts: Iterable[str] = (),
    count: int = GENERAL_FILES,
) -> list[dict]:
    """A fixed sample of `count` standard-library modules as dataset-style records (path, language,
    text): every `.py` file outside tests and demos, of 2 to 60 KB, ranked by a seeded hash of its path,
    so the same interpreter always gives the same files. A file whose text is among `exclude_texts`
    (the customer's own files: a vendored copy of a module) is passed over for the next."""
    root = Path(stdlib or sysconfig.get_paths()["stdlib"])
    excluded = {_text_sha(t) for t in exclude_texts}
    ranked = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if _SKIPPED_DIRS.intersection(rel.parts[:-1]) or rel.parts[0].startswith("config-"):
            continue
        ranked.append((hashlib.sha256(f"{_SEED}:{rel.as_posix()}".encode()).hexdigest(), rel, path))
    ranked.sort()
    files = []
    for _, rel, path in ranked:
        if len(files) == count:
            break
        try:
            if not GENERAL_MIN_BYTES <= path.stat().st_size <= GENERAL_MAX_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if _text_sha(text) in excluded:
            continue
        files.append({"path": PATH_PREFIX + rel.as_posix(), "language": "python", "text": text})
    return sorted(files, key=lambda f: f["path"])


def general_tasks_build(files: list[dict], *, max_tasks: int = GENERAL_TASKS) -> list[LineTask]:
    """Line tasks from the sample, built as the customer's held-out lines are."""
    return line_tasks_build(files, max_tasks=max_tasks)


def general_score(
    models: list[Candidate],
    tasks: list[LineTask],
    *,
    mode: str,
    files: int,
    log: Callable[[str], None],
) -> dict:
    """The base and the candidate (never the served version: forgetting is measured against the model
    the candidate was trained from) on the general tasks, in the report's common mode, without
    context. The block stored as the report's `general` metrics; per-task hits pair the two."""
    block: dict = {
        "source": general_source(),
        "files": files,
        "mode": mode,
        "tasks": len(tasks),
        "models": {},
    }
    for m in models:
        if m.label not in ("base", "candidate"):
            continue
        log(f"scoring {m.label} on {len(tasks)} lines of general code ({general_source()})")
        score = line_tasks_score(m, tasks, mode=mode)
        log(f"{m.label}: general-code exact match {score['exact_match']:.3f}")
        block["models"][m.label] = score
    return block
