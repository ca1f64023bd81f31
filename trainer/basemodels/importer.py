"""Import a base model from a local Hugging Face folder: safetensors only, no remote code, an
architecture the pinned GGUF converter supports, FIM format detected from the tokenizer."""

from __future__ import annotations

import json
import re
import shutil
from functools import lru_cache
from pathlib import Path

from appliance.errors import BaseModelError
from appliance.llm.fim import FimFormat, fim_format_detect

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
_REGISTER = re.compile(r"ModelBase\.register\(([^)]*)\)")


@lru_cache(maxsize=1)
def converter_architectures() -> frozenset[str]:
    """Architectures the pinned llama.cpp converter registers (read from its sources, not run)."""
    from trainer.export.converter import converter_dir

    names: set[str] = set()
    for source in converter_dir().rglob("*.py"):
        for args in _REGISTER.findall(source.read_text(errors="replace")):
            names.update(re.findall(r'"([A-Za-z0-9_]+)"', args))
    return frozenset(names)


def folder_check(path: Path) -> dict:
    """Validate a Hugging Face folder; return its config. Raises BaseModelError with the reason."""
    if not path.is_dir():
        raise BaseModelError(f"{path} is not a folder: give the path of a Hugging Face model folder.")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BaseModelError(f"{path} has no config.json; it is not a Hugging Face model folder.")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    weights = sorted(p.name for p in path.glob("*.safetensors"))
    if pickles:
        raise BaseModelError(
            f"Refusing {', '.join(pickles)}: pickle checkpoints can run arbitrary code when loaded. "
            "Convert the model to safetensors on a trusted machine and import that folder."
        )
    if not weights:
        raise BaseModelError(f"{path} has no *.safetensors weights.")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise BaseModelError(f"{config_file} is not valid JSON: {exc}") from exc
    if config.get("auto_map"):
        raise BaseModelError("This model needs its own Python code (auto_map); Hearth never runs remote code.")
    archs = config.get("architectures") or []
    if not archs:
        raise BaseModelError("config.json names no architecture.")
    supported = converter_architectures()
    if archs[0] not in supported:
        raise BaseModelError(
            f"Architecture {archs[0]} is not supported by the GGUF converter of the serving llama.cpp, "
            "so Hearth could not serve a model fine-tuned from it."
        )
    return config


def tokenizer_fim(path: Path) -> FimFormat | None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise BaseModelError(f"The tokenizer in {path} could not be loaded: {exc}") from exc
    return fim_format_detect(tokenizer.get_vocab())


def folder_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=False, ignore=shutil.ignore_patterns(".git", "*.partial"))
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
