"""The one place that turns the instance root into paths; nobody else builds them."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from appliance.errors import HearthError


def home() -> Path:
    return Path(settings.HEARTH_HOME)


def _dir(*parts: str) -> Path:
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _child(parent: Path, name: str) -> Path:
    """`parent / name`, refused unless it resolves to a direct child of `parent` (no '..', '/', links out)."""
    path = (parent / name).resolve()
    if path.parent != parent.resolve():
        raise HearthError(f"{name!r} would put files outside {parent}; refusing it.")
    return path


def mirrors_dir() -> Path:
    return _dir("mirrors")


def mirror_path(name: str) -> Path:
    return _child(mirrors_dir(), f"{name}.git")


def dataset_dir(pk: int) -> Path:
    return _dir("datasets", f"dataset-{pk:05d}")


def context_index_path(dataset_pk: int) -> Path:
    """The code index (SQLite FTS5) of a dataset's training files, beside its JSONL files."""
    return dataset_dir(dataset_pk) / "context.sqlite"


def basemodels_dir() -> Path:
    return _dir("basemodels")


def basemodel_dir(slug: str) -> Path:
    path = _child(basemodels_dir(), slug)
    path.mkdir(exist_ok=True)
    return path


def run_dir(pk: int) -> Path:
    return _dir("runs", f"run-{pk:05d}")


def model_version_dir(pk: int) -> Path:
    return _dir("models", f"version-{pk:05d}")


def evaluation_dir(pk: int) -> Path:
    return _dir("evaluations", f"evaluation-{pk:05d}")


def engine_secret_file() -> Path:
    """The shared secret that the web tier shows the engine on every request (mode 0600)."""
    return home() / "engine_secret"


def logs_dir() -> Path:
    return _dir("logs")


def scratch_dir() -> Path:
    """This process's local scratch (HEARTH_SCRATCH): never shared between machines, never an artifact."""
    path = Path(settings.HEARTH_SCRATCH) if settings.HEARTH_SCRATCH else home() / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def private_tmp_dir() -> Path:
    """Short-lived files that must not be world-readable (an SSH key handed to one git call)."""
    path = scratch_dir() / "private"
    path.mkdir(exist_ok=True)
    path.chmod(0o700)
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (GGUF files can be gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Crash-safe replacement. A finished file or folder only ever appears by rename, and a crash at any
# moment leaves the previous version or the new one on disk (never neither): a folder's previous
# version may sit as its `.old` sibling until `atomic_dir_recover` (or the next replace) puts it back.


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.name}.{tag}")


def _fsync_path(path: Path) -> None:
    """Flush one file's or folder's own entry to disk (a folder's fsync covers its names, not its files)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync_path(Path(folder) / name)
        _fsync_path(Path(folder))


def atomic_file_replace(partial: Path, path: Path) -> Path:
    """Put a finished file written at `partial` (a sibling of `path`, by this process or a tool it
    ran) in place of `path`: fsync it, rename it over `path`, fsync the folder so the rename lasts."""
    partial, path = Path(partial), Path(path)
    _fsync_path(partial)
    os.replace(partial, path)
    _fsync_path(path.parent)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` through a `.partial` sibling, so readers see the old bytes or the new."""
    path = Path(path)
    partial = _sibling(path, "partial")
    partial.write_bytes(data)
    return atomic_file_replace(partial, path)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_dir_recover(target: Path) -> bool:
    """Finish or undo a folder swap that a crash interrupted; True when `target` exists afterwards.

    `target.old` without `target`: the crash fell between the two renames, so the old version goes
    back. Both present: the swap finished but the old copy was not yet deleted. A `.partial` is
    always an unfinished new version and is dropped."""
    target = Path(target)
    old = _sibling(target, "old")
    if old.exists():
        if target.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, target)
            _fsync_path(target.parent)
    shutil.rmtree(_sibling(target, "partial"), ignore_errors=True)
    return target.exists()


def atomic_dir_replace(target: Path, write: Callable[[Path], None]) -> Path:
    """Replace folder `target` with one that `write(folder)` fills, so that a crash at any point
    leaves either the old version or the new one whole.

    `write` fills a fresh `target.partial`; its files are fsynced; the old folder is renamed aside
    to `target.old`, the new one renamed into place, the parent folder fsynced, the old deleted."""
    target = Path(target)
    partial, old = _sibling(target, "partial"), _sibling(target, "old")
    atomic_dir_recover(target)
    partial.mkdir(parents=True)
    try:
        write(partial)
        _fsync_tree(partial)
    except Exception:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():
        os.replace(target, old)
    os.replace(partial, target)
    _fsync_path(target.parent)
    shutil.rmtree(old, ignore_errors=True)
    return target
