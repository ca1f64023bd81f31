"""Import a base model from a local Hugging Face folder: safetensors only, no code of its own, an
architecture the pinned GGUF converter converts without trusting remote code, FIM format detected
from the tokenizer.

No code from a model folder ever runs: the folder may hold no Python file anywhere and no JSON file
with an `auto_map` (the key through which transformers imports a folder's own classes); only
known file names are copied into the instance; and only architectures whose conversion never
loads the tokenizer with `trust_remote_code=True` are accepted (see `architectures.py`).
`code_refusal` is also what the GGUF conversion checks before it runs the converter on any folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from functools import lru_cache
from pathlib import Path

from appliance.errors import BaseModelError
from appliance.llm.fim import FimFormat, fim_format_detect
from trainer.basemodels.architectures import REFUSED_TOKENIZER_CLASSES, SAFE_ARCHITECTURES

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
CODE_SUFFIXES = {".py", ".pyc", ".pyo", ".pyw"}
# The files an import copies, by name: weights, configs, tokenizer files, README/LICENSE-type text.
KNOWN_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "tokenizer.model",
        "vocab.json",
        "merges.txt",
        "added_tokens.json",
    }
)
_WEIGHTS = re.compile(r"[\w.-]+\.safetensors")
_TEXT = re.compile(r"(?i)(readme|licen[cs]e|notice|copying|use_policy)([-_][a-z0-9]+)?(\.(md|txt|rst))?")
_REGISTER = re.compile(r"ModelBase\.register\(([^)]*)\)")
# Sub-configs whose `architectures` llama.cpp's converter reads instead of the top-level one.
_TEXT_CONFIG_KEYS = ("llm_config", "lm_config", "language_config", "text_config")
_NO_CODE = "Hearth never runs remote code (code that comes with a model)."


@lru_cache(maxsize=1)
def converter_architectures() -> frozenset[str]:
    """Architectures the pinned llama.cpp converter registers (read from its sources, not run)."""
    from trainer.export.converter import converter_dir

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


def converter_architecture(config: dict) -> str:
    """The architecture the converter picks for a text model (its get_model_architecture)."""
    archs = config.get("architectures") or []
    arch = archs[0] if archs else ""
    if "thinker_config" in config and isinstance(config["thinker_config"], dict):
        text = config["thinker_config"].get("text_config") or {}
    else:
        text = next((config[k] for k in _TEXT_CONFIG_KEYS if isinstance(config.get(k), dict)), {})
    if text.get("architectures"):
        arch = text["architectures"][0]
    return arch


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
    tokenizer_config = _json_object(root / "tokenizer_config.json")
    cls = tokenizer_config.get("tokenizer_class")
    if cls in REFUSED_TOKENIZER_CLASSES:
        return f"The GGUF converter loads the tokenizer class {cls} with its own code. {_NO_CODE}"
    named = _architectures_named(_json_object(root / "config.json"))
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


def _json_object(path: Path) -> dict:
    """A JSON file's top-level object ({} if the file is absent or holds something else)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def folder_check(path: Path) -> dict:
    """Validate a Hugging Face folder; return its config. Raises BaseModelError with the reason."""
    path = Path(path)
    if not path.is_dir():
        raise BaseModelError(f"{path} is not a folder: give the path of a Hugging Face model folder.")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BaseModelError(f"{path} has no config.json; it is not a Hugging Face model folder.")
    reason = code_refusal(path)
    if reason:
        raise BaseModelError(f"Refusing {path}: {reason}")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    weights = sorted(p.name for p in path.glob("*.safetensors"))
    if pickles:
        raise BaseModelError(
            f"Refusing {', '.join(pickles)}: pickle checkpoints can run arbitrary code when loaded. "
            "Convert the model to safetensors on a trusted machine and import that folder."
        )
    if not weights:
        raise BaseModelError(f"{path} has no *.safetensors weights.")
    config = _json_object(config_file)
    archs = config.get("architectures") or []
    if not archs:
        raise BaseModelError("config.json names no architecture.")
    arch = converter_architecture(config)
    if arch not in converter_architectures():
        raise BaseModelError(
            f"Architecture {arch} is not supported by the GGUF converter of the serving llama.cpp, "
            "so Hearth could not serve a model fine-tuned from it."
        )
    return config


def import_files(path: Path) -> list[Path]:
    """The files of the folder an import copies: known names at its top level, nothing else."""
    return [
        p
        for p in sorted(Path(path).iterdir())
        if p.is_file() and (p.name in KNOWN_FILES or _WEIGHTS.fullmatch(p.name) or _TEXT.fullmatch(p.name))
    ]


def tokenizer_fim(path: Path) -> FimFormat | None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise BaseModelError(f"The tokenizer in {path} could not be loaded: {exc}") from exc
    return fim_format_detect(tokenizer.get_vocab())


def folder_copy(src: Path, dst: Path) -> None:
    """Copy the known files of `src` (links followed: they point inside it) into `dst`, atomically."""
    tmp = dst.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file in import_files(src):
        shutil.copyfile(file, tmp / file.name)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
