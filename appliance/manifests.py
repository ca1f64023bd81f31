"""Stage manifests: every artifact folder holds a `manifest.json` naming its inputs by sha256, its
settings, the library and llama.cpp versions it ran with, and its timings."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "llama-cpp-python",
    "gguf",
    "detect-secrets",
    "datasketch",
    "pathspec",
)


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def manifest_write(folder: Path, *, stage: str, **fields) -> dict:
    """Write `folder/manifest.json` for `stage` atomically (with the library versions and the
    llama.cpp the serving engine and the converter come from) and return it."""
    from appliance.paths import atomic_write_text

    libraries = library_versions()
    manifest = {"stage": stage, **fields, "libraries": libraries, "llama_cpp": libraries["llama-cpp-python"]}
    text = json.dumps(manifest, indent=2, default=str)
    atomic_write_text(Path(folder) / "manifest.json", text)
    return json.loads(text)  # what the file says (tuples as lists), for rows that keep a copy


def manifest_read(folder: Path) -> dict:
    """The manifest of a previous stage (what the next stage may read of it)."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def manifest_sha256(folder: Path) -> str:
    """sha256 of a stage's manifest, recorded as the next stage's input."""
    from appliance.paths import sha256_file

    path = Path(folder) / "manifest.json"
    return sha256_file(path) if path.is_file() else ""
