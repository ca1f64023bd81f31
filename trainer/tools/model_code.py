"""Whether a model folder could make Hearth run code of its own: what the base-model import checks
before it copies a folder, and what every GGUF conversion checks before it runs the converter."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

from trainer.tools.architectures import REFUSED_TOKENIZER_CLASSES, SAFE_ARCHITECTURES

CODE_SUFFIXES = {".py", ".pyc", ".pyo", ".pyw"}
_REGISTER = re.compile(r"ModelBase\.register\(([^)]*)\)")
_NO_CODE = "Hearth never runs remote code (code that comes with a model)."


@lru_cache(maxsize=1)
def converter_architectures() -> frozenset[str]:
    """Architectures the pinned llama.cpp converter registers (read from its sources, not run)."""
    from trainer.tools.converter import converter_dir

    names: set[str] = set()
    for source in converter_dir().rglob("*.py"):
        for args in _REGISTER.findall(source.read_text(errors="replace")):
            names.update(re.findall(r'"([A-Za-z0-9_.]+)"', args))
    return frozenset(names)


def _has_key(value, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(_has_key(v, key) for v in value)
    return False


def _architectures_named(value) -> list[str]:
    """Every architecture named anywhere in a config (top level and nested sub-configs)."""
    found: list[str] = []
    if isinstance(value, dict):
        archs = value.get("architectures")
        if isinstance(archs, list):
            found.extend(str(a) for a in archs)
        for v in value.values():
            found.extend(_architectures_named(v))
    elif isinstance(value, list):
        for v in value:
            found.extend(_architectures_named(v))
    return found


def _entries(root: Path):
    """(path, is_dir) for everything under root, not following links."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames):
            yield Path(dirpath) / name, True
        for name in sorted(filenames):
            yield Path(dirpath) / name, False


def code_refusal(path: Path) -> str | None:
    """Why the folder could make someone run code of its own, in a sentence; None if it cannot.

    Looks at everything below `path`, subfolders included: links that lead outside the folder,
    Python files, an `auto_map` in any JSON file, a tokenizer class the converter loads with
    remote code, and architectures outside SAFE_ARCHITECTURES."""
    root = Path(path).resolve()
    for entry, _is_dir in _entries(root):
        rel = entry.relative_to(root)
        if entry.is_symlink():
            target = entry.resolve()
            if not target.is_relative_to(root):
                return (
                    f"{rel} is a symbolic link to {target}, outside the model folder: copy the model with "
                    "its links resolved (cp -rL) and import that copy."
                )
            if not target.exists():
                return f"{rel} is a broken symbolic link."
        if entry.suffix.lower() in CODE_SUFFIXES:
            return f"The folder contains Python code ({rel}). {_NO_CODE} Remove it, or import another model."
    for entry, is_dir in _entries(root):
        if is_dir or entry.suffix.lower() != ".json":
            continue
        rel = entry.relative_to(root)
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"{rel} is not valid JSON ({exc}); it could hide settings Hearth has to check."
        if _has_key(data, "auto_map"):
            return (
                f"{rel} has an auto_map: this model needs its own Python code to load. {_NO_CODE} "
                "Use a model that transformers supports natively."
            )
    tokenizer_config = json_object_read(root / "tokenizer_config.json")
    cls = tokenizer_config.get("tokenizer_class")
    if cls in REFUSED_TOKENIZER_CLASSES:
        return f"The GGUF converter loads the tokenizer class {cls} with its own code. {_NO_CODE}"
    named = _architectures_named(json_object_read(root / "config.json"))
    refused = sorted({a for a in named if a not in SAFE_ARCHITECTURES})
    unsupported = [a for a in refused if a not in converter_architectures()]
    if unsupported:
        return (
            f"Architecture {', '.join(unsupported)} is not supported by the GGUF converter of the serving "
            "llama.cpp, so Hearth could not serve a model fine-tuned from it."
        )
    if refused:
        return (
            f"Architecture {', '.join(refused)} is refused: the GGUF converter of the serving llama.cpp loads "
            f"its tokenizer with trust_remote_code=True, which runs code from the model folder. {_NO_CODE}"
        )
    return None


def json_object_read(path: Path) -> dict:
    """A JSON file's top-level object ({} if the file is absent or holds something else)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
