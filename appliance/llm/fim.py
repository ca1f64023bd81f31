"""Fill-in-the-middle formats, detected from a tokenizer's vocabulary.

A format is the set of special-token texts a model family was trained with. Prompts are built
from token ids of these texts (never by letting user text be parsed as special tokens).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FimFormat:
    name: str
    prefix: str
    suffix: str
    middle: str
    eot: str
    pad: str | None = None
    file_sep: str | None = None
    repo_name: str | None = None
    # llama.cpp finds the well-known families' FIM tokens by their text when it loads a GGUF; only
    # other formats need tokenizer.ggml.fim_* keys written into the file.
    llama_cpp_detects: bool = True

    @property
    def special_tokens(self) -> list[str]:
        return [
            t
            for t in (
                self.prefix,
                self.suffix,
                self.middle,
                self.eot,
                self.pad,
                self.file_sep,
                self.repo_name,
            )
            if t
        ]

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "llama_cpp_detects"}


STARCODER = FimFormat(
    "starcoder",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    "<|endoftext|>",
    pad="<fim_pad>",
    file_sep="<file_sep>",
    repo_name="<repo_name>",
)
QWEN = FimFormat(
    "qwen2.5-coder",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|endoftext|>",
    pad="<|fim_pad|>",
    file_sep="<|file_sep|>",
    repo_name="<|repo_name|>",
)
DEEPSEEK = FimFormat(
    "deepseek-coder",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
    "<｜end▁of▁sentence｜>",
)
CODELLAMA = FimFormat("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>")
# Hearth's bootstrap micro model carries its own FIM tokens.
HEARTH = FimFormat(
    "hearth",
    "<hearth_fim_prefix>",
    "<hearth_fim_suffix>",
    "<hearth_fim_middle>",
    "<hearth_eot>",
    pad="<hearth_pad>",
    file_sep="<hearth_file_sep>",
    llama_cpp_detects=False,
)

# File-separator tokens of the repository-level formats code models are pretrained on (StarCoder and
# SmolLM2, Qwen2.5-Coder, Hearth's micro model): a vocabulary holding one gets snippets of other files
# after it, in its own format.
FILE_SEP_TOKENS = ("<file_sep>", "<|file_sep|>", "<hearth_file_sep>")

FORMATS: dict[str, FimFormat] = {f.name: f for f in (HEARTH, QWEN, STARCODER, DEEPSEEK, CODELLAMA)}

# The format fine-tuning adds to a base that has none (SmolLM2's vocabulary is StarCoder-like,
# and llama.cpp recognises these token texts as FIM tokens).
ADDED_FORMAT = STARCODER


def fim_format_detect(vocab: Iterable[str]) -> FimFormat | None:
    """The FIM format whose prefix/suffix/middle tokens are all in `vocab`, or None."""
    tokens = set(vocab)
    for fmt in FORMATS.values():
        if {fmt.prefix, fmt.suffix, fmt.middle} <= tokens:
            return fmt
    return None


def fim_format_get(name: str) -> FimFormat | None:
    return FORMATS.get(name) if name else None
