"""A base's tokenizer (never with remote code) and its fill-in-the-middle tokens: the format it
uses, Hearth's own added when it has none, and the token ids the GGUF metadata records."""

from __future__ import annotations

from appliance.errors import TrainingError
from appliance.llm.fim import ADDED_FORMAT, FimFormat, fim_format_detect


def tokenizer_load(path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as exc:
        raise TrainingError(f"The tokenizer of the base model at {path} could not be loaded: {exc}") from exc


def fim_tokens_ensure(tokenizer) -> tuple[FimFormat, list[int]]:
    """The tokenizer's FIM format; if it has none, add Hearth's and return the new token ids."""
    fmt = fim_format_detect(tokenizer.get_vocab())
    if fmt is not None:
        return fmt, []
    fmt = ADDED_FORMAT
    missing = [t for t in fmt.special_tokens if t not in tokenizer.get_vocab()]
    tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return fmt, [tokenizer.convert_tokens_to_ids(t) for t in missing]


def fim_token_ids(tokenizer, fmt) -> dict[str, int]:
    roles = ("prefix", "suffix", "middle", "eot", "pad", "file_sep")
    return {role: tokenizer.convert_tokens_to_ids(getattr(fmt, role)) for role in roles if getattr(fmt, role)}
