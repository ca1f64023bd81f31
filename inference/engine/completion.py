"""Completion on a llama.cpp model in its own FIM format, shared by serving and evaluation.

llama-cpp-python's own `suffix=` path hard-codes FIM token ids to 0, so prompts are built here
from the ids of the model's own FIM tokens. Literal user text is tokenized with special=False,
so code that contains "<fim_prefix>" cannot inject a control token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from appliance.errors import EngineError
from trainer.basemodels.fim import FimFormat


@dataclass
class CompletionResult:
    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    timings: dict = field(default_factory=dict)


class Completer:
    """Wraps one `llama_cpp.Llama`. Not thread-safe: the engine serialises calls per model."""

    def __init__(self, llm, fim: FimFormat | None):
        self.llm = llm
        self.fim = fim
        self.fim_ids: dict[str, int] = {}
        if fim is not None:
            for role in ("prefix", "suffix", "middle", "eot"):
                ids = llm.tokenize(getattr(fim, role).encode(), add_bos=False, special=True)
                if len(ids) != 1:
                    raise EngineError(f"FIM token {getattr(fim, role)!r} is not a single token in this model.")
                self.fim_ids[role] = ids[0]
        self.stop_ids = {llm.token_eos()} | ({self.fim_ids["eot"]} if fim else set())
        self._pieces: list[bytes] | None = None

    @property
    def can_infill(self) -> bool:
        return self.fim is not None

    def _tok(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def _vocab_pieces(self) -> list[bytes]:
        if self._pieces is None:
            n = self.llm.n_vocab()
            self._pieces = [self.llm.detokenize([i], special=False) for i in range(n)]
        return self._pieces

    def prompt_build(
        self, prefix: str, suffix: str | None, *, prefix_budget: int, suffix_budget: int = 256
    ) -> tuple[list[int], bytes]:
        """Token ids of the prompt and the bytes the first generated token must start with.

        Prefix-only prompts drop a trailing whitespace-only token and let the model regenerate
        it ("token healing"): tokenizers merge a newline with the next line's indentation, so a
        prompt ending on a bare newline ends on a token the model rarely saw there.
        The prefix is cut from the front in half-budget steps, so successive requests on the same
        file keep the same cut and reuse the KV cache.
        """
        prefix_ids = _cut_front(self._tok(prefix), prefix_budget)
        if suffix is not None and self.fim is not None:
            suffix_ids = self._tok(suffix)[:suffix_budget]
            ids = [self.fim_ids["prefix"], *prefix_ids, self.fim_ids["suffix"], *suffix_ids, self.fim_ids["middle"]]
            return ids, b""
        heal = b""
        if prefix_ids:
            last = self.llm.detokenize([prefix_ids[-1]], special=False)
            if last and not last.strip():
                heal = last
                prefix_ids = prefix_ids[:-1]
        bos = [self.llm.token_bos()] if self._wants_bos() else []
        return bos + prefix_ids, heal

    def _wants_bos(self) -> bool:
        return bool(self.llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true")

    def complete(
        self,
        prefix: str,
        suffix: str | None = None,
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        single_line: bool = False,
        max_prompt_tokens: int | None = None,
        max_suffix_tokens: int = 256,
        deadline_s: float | None = None,
        on_token=None,
    ) -> CompletionResult:
        stop = [s for s in (stop or []) if s]
        budget = min(max_prompt_tokens or self.llm.n_ctx(), self.llm.n_ctx() - max_tokens - 8)
        if suffix is not None and self.fim is not None:
            max_suffix_tokens = min(max_suffix_tokens, budget // 4)
            budget -= max_suffix_tokens + 3
        ids, heal = self.prompt_build(prefix, suffix, prefix_budget=budget, suffix_budget=max_suffix_tokens)
        started = time.monotonic()
        cached = _common_prefix(self.llm._input_ids.tolist() if self.llm.n_tokens else [], ids)
        allowed = None
        if heal:
            pieces = self._vocab_pieces()
            allowed = np.array([p.startswith(heal) for p in pieces], dtype=bool)

        first = True

        def heal_processor(_input_ids, scores):
            nonlocal first
            if first and allowed is not None:
                scores = np.where(allowed[: scores.shape[0]], scores, -np.inf).astype(np.single)
            first = False
            return scores

        from llama_cpp import LogitsProcessorList

        out = bytearray()
        n_generated = 0
        finish = "length"
        first_token_at = None
        for token in self.llm.generate(
            ids, temp=temperature, top_p=top_p, top_k=0 if temperature > 0 else 1, repeat_penalty=1.0,
            reset=True, logits_processor=LogitsProcessorList([heal_processor]) if heal else None,
        ):
            if first_token_at is None:
                first_token_at = time.monotonic()
            if token in self.stop_ids:
                finish = "stop"
                break
            n_generated += 1
            out += self.llm.detokenize([token], special=False)
            text = bytes(out[len(heal):]).decode("utf-8", errors="ignore")
            if on_token is not None:
                on_token(text)
            if single_line and "\n" in text:
                finish = "stop"
                break
            if any(s in text for s in stop):
                finish = "stop"
                break
            if n_generated >= max_tokens:
                break
            if deadline_s is not None and time.monotonic() - started > deadline_s:
                break
        text = bytes(out[len(heal):]).decode("utf-8", errors="ignore") if out.startswith(heal) else out.decode(
            "utf-8", errors="ignore")
        if single_line:
            text = text.split("\n", 1)[0]
        for s in stop:
            if s in text:
                text = text[: text.index(s)]
        ended = time.monotonic()
        return CompletionResult(
            text=text,
            finish_reason=finish,
            prompt_tokens=len(ids),
            completion_tokens=n_generated,
            cached_tokens=cached,
            timings={
                "prompt_n": len(ids) - cached,
                "prompt_ms": round(((first_token_at or ended) - started) * 1000, 2),
                "predicted_n": n_generated,
                "predicted_ms": round((ended - (first_token_at or ended)) * 1000, 2),
            },
        )


def _cut_front(ids: list[int], budget: int) -> list[int]:
    if len(ids) <= budget:
        return ids
    step = max(1, budget // 2)
    drop = -(-(len(ids) - budget) // step) * step
    return ids[drop:]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
