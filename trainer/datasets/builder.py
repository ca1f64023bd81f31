"""Build a dataset folder from mirrors at recorded SHAs: filter, split, write JSONL + manifest.

Pure stage code: takes paths and options, returns a summary; Django rows are handled by services.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.errors import DatasetError
from trainer.datasets.languages import language_of
from trainer.mirrors.git import TreeEntry, blobs_read, tree_list

VENDORED_DIRS = {"node_modules", "vendor", "third_party", "dist", "build", ".venv", "venv", "site-packages"}


@dataclass(frozen=True)
class DatasetOptions:
    max_file_bytes: int = 1_000_000
    heldout_percent: int = 15
    min_train_files: int = 1
    languages: tuple[str, ...] = ()  # empty: every recognised language

    def __post_init__(self) -> None:
        if not 1 <= self.heldout_percent <= 50:
            raise DatasetError("heldout_percent must be between 1 and 50.")
        if self.max_file_bytes < 1:
            raise DatasetError("max_file_bytes must be positive.")


@dataclass
class SourceRepo:
    name: str
    mirror: Path
    sha: str


@dataclass
class BuildResult:
    commits: dict[str, str]
    train_files: int = 0
    heldout_files: int = 0
    train_bytes: int = 0
    heldout_bytes: int = 0
    skipped: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    dropped: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def report(self) -> dict:
        data = asdict(self)
        data["skipped"] = dict(self.skipped)
        data["languages"] = dict(self.languages)
        return data


def _split_score(repo: str, path: str) -> int:
    digest = hashlib.sha256(f"{repo}:{path}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:4], "big")


def heldout_paths(repo: str, paths: list[str], percent: int) -> set[str]:
    """Deterministic split by path: the same file is always on the same side. A small repository
    still holds out one file (the lowest score), so it can be evaluated."""
    chosen = {p for p in paths if _split_score(repo, p) % 100 < percent}
    if not chosen and len(paths) >= 2:
        chosen = {min(paths, key=lambda p: _split_score(repo, p))}
    return chosen


def _skip_reason(entry: TreeEntry, options: DatasetOptions) -> str | None:
    parts = entry.path.split("/")
    if entry.is_submodule:
        return "submodule"
    if entry.is_symlink:
        return "symlink"
    if any(p in VENDORED_DIRS for p in parts[:-1]):
        return "vendored"
    language = language_of(entry.path)
    if language is None:
        return "language-unknown"
    if options.languages and language not in options.languages:
        return "language-off"
    if entry.size is not None and entry.size > options.max_file_bytes:
        return "too-large"
    return None


def _content_skip_reason(data: bytes) -> str | None:
    if b"\0" in data[:8192]:
        return "binary"
    if data.startswith(b"version https://git-lfs.github.com/spec/"):
        return "lfs-pointer"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "not-utf8"
    if not data.strip():
        return "empty"
    return None


def dataset_build_files(
    sources: list[SourceRepo],
    out_dir: Path,
    options: DatasetOptions,
    progress: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Read every source at its SHA, keep source files, write train/heldout JSONL and a manifest."""
    started = time.monotonic()
    result = BuildResult(commits={s.name: s.sha for s in sources})
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "train.jsonl").open("w") as train, (out_dir / "heldout.jsonl").open("w") as heldout:
        for source in sources:
            entries = tree_list(source.mirror, source.sha)
            by_oid: dict[str, list[TreeEntry]] = {}
            for entry in entries:
                reason = _skip_reason(entry, options)
                if reason:
                    result.skipped[reason] += 1
                    result.dropped.append({"repo": source.name, "path": entry.path, "reason": reason})
                else:
                    by_oid.setdefault(entry.oid, []).append(entry)
            total = sum(len(v) for v in by_oid.values())
            heldout_set = heldout_paths(source.name, [e.path for v in by_oid.values() for e in v],
                                        options.heldout_percent)
            done = 0
            for oid, data in blobs_read(source.mirror, list(by_oid)):
                for entry in by_oid[oid]:
                    done += 1
                    reason = _content_skip_reason(data)
                    if reason:
                        result.skipped[reason] += 1
                        result.dropped.append({"repo": source.name, "path": entry.path, "reason": reason})
                        continue
                    language = language_of(entry.path) or "text"
                    record = {"repo": source.name, "path": entry.path, "language": language,
                              "text": data.decode("utf-8")}
                    line = json.dumps(record, ensure_ascii=False) + "\n"
                    if entry.path in heldout_set:
                        heldout.write(line)
                        result.heldout_files += 1
                        result.heldout_bytes += len(data)
                    else:
                        train.write(line)
                        result.train_files += 1
                        result.train_bytes += len(data)
                    result.languages[language] += 1
                if progress:
                    progress(done, total)
    result.seconds = round(time.monotonic() - started, 3)
    if result.train_files + result.heldout_files == 0:
        raise DatasetError(
            f"Nothing is left after filtering: {sum(result.skipped.values())} files were all skipped "
            f"({', '.join(f'{k}: {v}' for k, v in result.skipped.most_common())})."
        )
    if result.train_files < options.min_train_files or result.heldout_files == 0:
        raise DatasetError(
            f"Too little data: {result.train_files} training and {result.heldout_files} held-out files "
            f"after filtering; Hearth needs at least {options.min_train_files} and 1."
        )
    manifest = {
        "stage": "dataset",
        "commits": result.commits,
        "options": asdict(options),
        "counts": {k: v for k, v in result.report().items() if k not in {"dropped", "commits"}},
        "files": {name: _sha256(out_dir / name) for name in ("train.jsonl", "heldout.jsonl")},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return result


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_files_read(dataset_dir: Path, split: str) -> list[dict]:
    with (dataset_dir / f"{split}.jsonl").open() as f:
        return [json.loads(line) for line in f]
