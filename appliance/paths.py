"""The one place that turns the instance root into paths; nobody else builds them."""

from __future__ import annotations

import hashlib
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


def datasets_dir() -> Path:
    return _dir("datasets")


def dataset_dir(pk: int) -> Path:
    return _dir("datasets", f"dataset-{pk:05d}")


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


def engine_state_file() -> Path:
    return _dir("engine") / "state.json"


def logs_dir() -> Path:
    return _dir("logs")


def private_tmp_dir() -> Path:
    """Short-lived files that must not be world-readable (an SSH key handed to one git call)."""
    path = _dir("tmp")
    path.chmod(0o700)
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (GGUF files can be gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
