"""The prompt builder: a llama.cpp model's prompt in its own FIM format, shared by serving and evaluation.

llama-cpp-python's own `suffix=` path hard-codes FIM token ids to 0, so prompts are built here
from the ids of the model's own FIM tokens. Literal user text is tokenized with special=False,
so code that contains "<fim_prefix>" cannot inject a control token.
"""

from __future__ import annotations

import time

import numpy as np

from appliance.errors import EngineError
from appliance.llm.fim import FILE_SEP_TOKENS, FimFormat
from appliance.llm.sampling import MIN_P, CompletionResult, Generation, SamplingOptions, common_prefix


class Completer:
    """Wraps one `llama_cpp.Llama`. `complete` decodes on that Llama's context and is not thread-safe;
    `prepare` only tokenizes, so the batched engine's slots call it concurrently."""

    def __init__(self, llm, fim: FimFormat | None, *, context_format: str = "auto"):
        self.llm = llm
        self.fim = fim
        self.fim_ids: dict[str, int] = {}
        if fim is not None:
            for role in ("prefix", "suffix", "middle", "eot"):
                ids = llm.tokenize(getattr(fim, role).encode(), add_bos=False, special=True)
                if len(ids) != 1:
                    raise EngineError(
                        f"FIM token {getattr(fim, role)!r} is not a single token in this model."
                    )
                self.fim_ids[role] = ids[0]
        self.stop_ids = {llm.token_eos()} | ({self.fim_ids["eot"]} if fim else set())
        self._pieces: list[bytes] | None = None
        # Other files' snippets go after the model's own file-separator token where its vocabulary
        # has one (the repository format it was pretrained on), else as path-comment blocks.
        self.file_sep_id: int | None = None
        if context_format not in ("auto", "comments"):
            raise EngineError(f"Unknown context format {context_format!r} (auto or comments).")
        if context_format == "auto":
            seps = ([fim.file_sep] if fim is not None and fim.file_sep else []) + list(FILE_SEP_TOKENS)
            self.file_sep_id = next((i for i in map(self._special, seps) if i is not None), None)

    @property
    def can_infill(self) -> bool:
        return self.fim is not None

    def _tok(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def _heal_mask(self, remaining: bytes) -> np.ndarray:
        """Tokens allowed while `remaining` of the healed text is still to be generated (cached)."""
        cache = self.__dict__.setdefault("_heal_masks", {})
        if remaining not in cache:
            cache[remaining] = np.array(
                [
                    bool(p) and (p.startswith(remaining) or remaining.startswith(p))
                    for p in self._vocab_pieces()
                ],
                dtype=bool,
            )
        return cache[remaining]

    def piece(self, token: int) -> bytes:
        """The text of one token (special tokens render as nothing), from the vocabulary's table that
        token healing uses too (built once, about 0.1 s for 49,152 tokens)."""
        return self._vocab_pieces()[token]

    def _vocab_pieces(self) -> list[bytes]:
        if self._pieces is None:
            n = self.llm.n_vocab()
            self._pieces = [self.llm.detokenize([i], special=False) for i in range(n)]
        return self._pieces

    def prompt_build(
        self,
        prefix: str,
        suffix: str | None,
        *,
        prefix_budget: int,
        suffix_budget: int = 256,
        context: list[tuple[str, str]] | None = None,
        filepath: str = "",
        trim_lines: bool = False,
    ) -> tuple[list[int], bytes]:
        """Token ids of the prompt and the bytes the first generated token must start with.

        Prefix-only prompts drop a trailing whitespace-only token and let the model regenerate
        it ("token healing"): tokenizers merge a newline with the next line's indentation, so a
        prompt ending on a bare newline ends on a token the model rarely saw there.
        The prefix is cut from the front in half-budget steps, so successive requests on the same
        file keep the same cut and reuse the KV cache; with `trim_lines` both cuts then move to a
        line boundary. `context` (other files: path, text) goes where the model expects it: after
        file-separator tokens for repository-level FIM formats, else as text before the prefix.
        """
        context_ids: list[int] = []
        if context:
            context_budget = int(prefix_budget * CONTEXT_SHARE)
            context_ids = self._context_ids(context, filepath, context_budget)
            prefix_budget -= len(context_ids)
        prefix_ids = self._prefix_ids(prefix, prefix_budget, trim_lines)
        if suffix is not None and self.fim is not None:
            suffix_ids = self._suffix_ids(suffix, suffix_budget, trim_lines)
            ids = [
                *context_ids,
                self.fim_ids["prefix"],
                *prefix_ids,
                self.fim_ids["suffix"],
                *suffix_ids,
                self.fim_ids["middle"],
            ]
            return ids, b""
        heal = b""
        if prefix_ids:
            last = self.llm.detokenize([prefix_ids[-1]], special=False)
            if last and not last.strip():
                heal = last
                prefix_ids = prefix_ids[:-1]
        bos = [self.llm.token_bos()] if self._wants_bos() else []
        ids = bos + context_ids + prefix_ids
        if not ids:  # an empty prompt: start from the beginning-of-text token (llama.cpp needs one)
            bos_id = self.llm.token_bos()
            ids = [bos_id if bos_id >= 0 else self.llm.token_eos()]
        return ids, heal

    def _prefix_ids(self, prefix: str, budget: int, trim_lines: bool) -> list[int]:
        ids = self._tok(prefix)
        cut = _cut_front(ids, budget)
        if not trim_lines or len(cut) == len(ids):
            return cut
        dropped = len(
            self.llm.detokenize(ids[: len(ids) - len(cut)], special=False).decode("utf-8", "ignore")
        )
        newline = prefix.find("\n", dropped)
        if newline < 0:
            return cut
        return self._tok(prefix[newline + 1 :])[-budget:] if budget > 0 else []

    def _suffix_ids(self, suffix: str, budget: int, trim_lines: bool) -> list[int]:
        ids = self._tok(suffix)
        if len(ids) <= budget:
            return ids
        if not trim_lines:
            return ids[:budget]
        kept = self.llm.detokenize(ids[:budget], special=False).decode("utf-8", "ignore")
        return self._tok(kept[: kept.rfind("\n") + 1]) if "\n" in kept else ids[:budget]

    def _context_ids(self, context: list[tuple[str, str]], filepath: str, budget: int) -> list[int]:
        sep = self.file_sep_id
        ids: list[int] = []
        tail = [sep, *self._tok(f"{filepath}\n" if filepath else "\n")] if sep is not None else []
        # The last snippets are the best (nearest the cursor): keep them first when the budget is short.
        for path, text in reversed(context):
            piece = context_block(path, text, file_sep=sep is not None, comment=comment_for(filepath or path))
            piece_ids = ([sep] if sep is not None else []) + self._tok(piece)
            if len(ids) + len(piece_ids) + len(tail) > budget:
                break
            ids = piece_ids + ids
        return ids + tail if ids else ids

    def _special(self, text: str) -> int | None:
        ids = self.llm.tokenize(text.encode(), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None

    def _wants_bos(self) -> bool:
        return bool(self.llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true")

    def prepare(
        self,
        prefix: str,
        suffix: str | None = None,
        *,
        n_ctx: int,
        options: SamplingOptions,
        context: list[tuple[str, str]] | None = None,
        filepath: str = "",
        on_token=None,
        cancel=None,
    ) -> Generation:
        """The prompt of one completion in a window of `n_ctx` tokens, and its per-token rules."""
        max_suffix_tokens = options.max_suffix_tokens
        budget = min(options.max_prompt_tokens or n_ctx, n_ctx - options.max_tokens - 8)
        if suffix is not None and self.fim is not None:
            max_suffix_tokens = min(max_suffix_tokens, budget // 4)
            budget -= max_suffix_tokens + 3
        ids, heal = self.prompt_build(
            prefix,
            suffix,
            prefix_budget=budget,
            suffix_budget=max_suffix_tokens,
            context=context,
            filepath=filepath,
            trim_lines=options.trim_lines,
        )
        return Generation(self, ids, heal, options, on_token=on_token, cancel=cancel)

    def complete(
        self,
        prefix: str,
        suffix: str | None = None,
        options: SamplingOptions | None = None,
        *,
        context: list[tuple[str, str]] | None = None,
        filepath: str = "",
        on_token=None,
        cancel=None,
    ) -> CompletionResult:
        """Complete `prefix` (filling up to `suffix` when given and the model can infill).

        `cancel` (a threading.Event) is checked between tokens: a set event ends generation with
        finish_reason "cancelled". `max_tokens=0` only evaluates the prompt (a cache warm-up). Runs on
        this completer's own llama.cpp context, one token at a time.
        """
        if cancel is not None and cancel.is_set():
            return CompletionResult("", "cancelled", 0, 0, 0)
        gen = self.prepare(
            prefix,
            suffix,
            n_ctx=self.llm.n_ctx(),
            options=options or SamplingOptions(),
            context=context,
            filepath=filepath,
            on_token=on_token,
            cancel=cancel,
        )
        gen.started = time.monotonic()
        gen.cached = common_prefix(self.llm._input_ids.tolist() if self.llm.n_tokens else [], gen.ids)
        from llama_cpp import LogitsProcessorList

        processors = LogitsProcessorList([lambda _ids, scores: gen.mask(scores)]) if gen.heal else None
        for token in self.llm.generate(
            gen.ids,
            temp=gen.temperature,
            top_p=gen.top_p,
            min_p=MIN_P,
            top_k=0 if gen.temperature > 0 else 1,
            repeat_penalty=1.0,
            reset=True,
            logits_processor=processors,
        ):
            if gen.accept(token):
                break
        return gen.result()


# The share of the prompt's token budget other files' snippets may take; the rest is the file itself.
CONTEXT_SHARE = 0.4


def comment_for(path: str) -> str:
    """The line-comment mark of `path`'s language, for a snippet's path line."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return COMMENT_MARKS.get(suffix, "#")


# File types whose line comments are not `#`; anything else gets `#`.
COMMENT_MARKS = {
    ext: "//"
    for ext in [
        "c",
        "h",
        "cc",
        "cpp",
        "cxx",
        "hpp",
        "hh",
        "cs",
        "java",
        "js",
        "jsx",
        "ts",
        "tsx",
        "mjs",
        "cjs",
        "go",
        "rs",
        "kt",
        "kts",
        "scala",
        "swift",
        "dart",
        "php",
        "groovy",
    ]
} | {
    "sql": "--",
    "lua": "--",
    "hs": "--",
    "lisp": ";",
    "el": ";",
    "clj": ";",
    "erl": "%",
    "tex": "%",
    "vim": '"',
}


def context_block(path: str, text: str, *, file_sep: bool, comment: str = "#") -> str:
    """One snippet of another file as the prompt writes it (after a file-separator token in a
    repository-level format, else as a path comment and the code). Training writes the same."""
    if file_sep:
        return f"{path}\n{text.rstrip()}\n"
    return (f"{comment} {path}\n" if path else "") + text.rstrip() + "\n\n"


def _cut_front(ids: list[int], budget: int) -> list[int]:
    if len(ids) <= budget:
        return ids
    step = max(1, budget // 2)
    drop = -(-(len(ids) - budget) // step) * step
    return ids[drop:]
