"""The one place that turns the instance root into paths; nobody else builds them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings


def home() -> Path:
    return Path(settings.HEARTH_HOME)


def _dir(*parts: str) -> Path:
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def mirrors_dir() -> Path:
    return _dir("mirrors")


def mirror_path(name: str) -> Path:
    return mirrors_dir() / f"{name}.git"


def datasets_dir() -> Path:
    return _dir("datasets")


def dataset_dir(pk: int) -> Path:
    return _dir("datasets", f"dataset-{pk:05d}")


def basemodels_dir() -> Path:
    return _dir("basemodels")


def basemodel_dir(slug: str) -> Path:
    return _dir("basemodels", slug)


def run_dir(pk: int) -> Path:
    return _dir("runs", f"run-{pk:05d}")


def model_version_dir(pk: int) -> Path:
    return _dir("models", f"version-{pk:05d}")


def evaluation_dir(pk: int) -> Path:
    return _dir("evaluations", f"evaluation-{pk:05d}")


def engine_state_file() -> Path:
    return _dir("engine") / "state.json"


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


def atomic_write_text(path: Path, text: str) -> None:
    """Write `path` as `<path>.partial`, fsync it, then rename it into place: readers see the old
    file or the new one, never half of one."""
    import os

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, path)
