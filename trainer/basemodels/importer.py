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

import re
import shutil
from pathlib import Path

from appliance.errors import BaseModelError
from appliance.llm.fim import FimFormat, fim_format_detect
from trainer.tools.model_code import code_refusal, converter_architectures, json_object_read

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
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
# Sub-configs whose `architectures` llama.cpp's converter reads instead of the top-level one.
_TEXT_CONFIG_KEYS = ("llm_config", "lm_config", "language_config", "text_config")


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
    config = json_object_read(config_file)
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
