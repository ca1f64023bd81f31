"""Sampling: the options of one completion and the per-token rules of a generation in progress.

One `Generation` class serves the sequential path (`Completer.complete`) and the engine's batched
one, so that a request decodes alike on both and evaluation scores what serving returns.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields

import numpy as np

from appliance.errors import HearthError

# Sampling at temperature > 0 drops tokens under this fraction of the best token's probability
# (llama.cpp's default min-p), on the sequential and the batched path alike.
MIN_P = 0.05


class SamplingError(HearthError):
    """A completion's options are out of range; `fields` names the options at fault, in order."""

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()):
        super().__init__(message)
        self.fields = fields


@dataclass(frozen=True)
class SamplingOptions:
    """How one completion is decoded. Every dialect of the API and the evaluation harness build one."""

    max_tokens: int = field(
        default=64, metadata={"help": "Tokens to generate at most (0: only read the prompt)."}
    )
    temperature: float = field(default=0.0, metadata={"help": "0 is greedy; higher samples more freely."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus cut-off, in (0, 1]."})
    stop: tuple[str, ...] = field(
        default=(), metadata={"help": "Texts that end the completion (not returned)."}
    )
    single_line: bool = field(default=False, metadata={"help": "End at the first newline."})
    max_lines: int = field(default=0, metadata={"help": "End after this many lines (0: no limit)."})
    max_prompt_tokens: int | None = field(
        default=None, metadata={"help": "Prompt budget (default: the window)."}
    )
    max_suffix_tokens: int = field(default=256, metadata={"help": "Suffix budget of a FIM prompt."})
    deadline_s: float | None = field(
        default=None, metadata={"help": "Stop generating after this many seconds."}
    )
    trim_lines: bool = field(default=False, metadata={"help": "Cut prefix and suffix at line boundaries."})

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))
        problems: list[tuple[str, str]] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                problems.append((f.name, f"{f.name} must be a finite number"))
        if self.max_tokens < 0:
            problems.append(("max_tokens", "max_tokens must be 0 or more"))
        if self.temperature < 0:
            problems.append(("temperature", "temperature must be 0 or more"))
        if not 0 < self.top_p <= 1:
            problems.append(("top_p", "top_p must be in (0, 1]"))
        if self.max_lines < 0 or self.max_suffix_tokens < 0:
            problems.append(("max_lines", "max_lines and max_suffix_tokens must be 0 or more"))
        if problems:
            raise SamplingError("; ".join(m for _, m in problems) + ".", fields=tuple(n for n, _ in problems))


@dataclass
class CompletionResult:
    text: str
    finish_reason: str  # stop | length | cancelled
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    timings: dict = field(default_factory=dict)
    stop_word: str = ""


class Generation:
    """One completion in progress: its prompt, and what each generated token does to it.

    Shared by the sequential path (`Completer.complete`, one llama.cpp context per caller) and the
    batched one (the engine's `batched` module), which feeds tokens sampled from a shared batch.
    """

    def __init__(
        self, completer, ids: list[int], heal: bytes, options: SamplingOptions, *, on_token=None, cancel=None
    ):
        self.completer, self.ids, self.heal, self.options = completer, ids, heal, options
        self.max_tokens, self.temperature, self.top_p = options.max_tokens, options.temperature, options.top_p
        self.stop, self.single_line, self.max_lines = options.stop, options.single_line, options.max_lines
        self.deadline_s = options.deadline_s
        self.on_token, self.cancel = on_token, cancel
        # Token healing across tokens: until the removed text is regenerated, a token must either
        # be a prefix of what remains of it or extend past it.
        self.remaining = heal
        self.out = bytearray()
        self.n_generated = 0
        self.finish = "length"
        self.cached = 0
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.ended: float | None = None

    def mask(self, scores: np.ndarray) -> np.ndarray:
        """The logits with tokens that would break token healing ruled out."""
        if not self.remaining:
            return scores
        allowed = self.completer._heal_mask(self.remaining)
        return np.where(allowed[: scores.shape[0]], scores, -np.inf).astype(np.single)

    def sample(self, logits: np.ndarray, rng: np.random.Generator) -> int:
        """The next token from raw logits: greedy at temperature 0, else llama.cpp's sampler chain.

        Same order and cut-offs as the sequential path's llama.cpp sampler: top-p, then min-p
        (`MIN_P` of the best token's probability), both on the untempered distribution, then the
        temperature over what is left.
        """
        scores = self.mask(logits)
        if self.temperature <= 0:
            return int(scores.argmax())
        scores = scores.astype(np.float64)
        order = np.argsort(-scores)
        ranked = scores[order]
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            probs = np.nan_to_num(np.exp(ranked - ranked[0]))
        probs /= probs.sum()
        keep = len(order)
        if self.top_p < 1.0:
            keep = min(keep, int(np.searchsorted(np.cumsum(probs), self.top_p)) + 1)
        keep = max(1, min(keep, int(np.count_nonzero(probs >= MIN_P * probs[0]))))
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            tempered = np.nan_to_num(np.exp((ranked[:keep] - ranked[0]) / self.temperature))
        if tempered.sum() <= 0:  # a temperature so small that only the best token is left
            return int(order[0])
        return int(order[rng.choice(keep, p=tempered / tempered.sum())])

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def accept(self, token: int) -> bool:
        """Take one generated token; True when generation is over (the token may not be kept)."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if self.cancelled:
            self.finish = "cancelled"
            return True
        if self.n_generated >= self.max_tokens:
            return True
        if token in self.completer.stop_ids:
            self.finish = "stop"
            return True
        self.n_generated += 1
        piece = self.completer.piece(token)
        self.out += piece
        if self.remaining:
            self.remaining = b"" if piece.startswith(self.remaining) else self.remaining[len(piece) :]
        text = bytes(self.out[len(self.heal) :]).decode("utf-8", errors="ignore")
        if self.on_token is not None:
            self.on_token(text)
        if (self.single_line and "\n" in text) or (self.max_lines > 1 and text.count("\n") >= self.max_lines):
            self.finish = "stop"
            return True
        if any(s in text for s in self.stop):
            self.finish = "stop"
            return True
        if self.n_generated >= self.max_tokens:
            return True
        return self.deadline_s is not None and time.monotonic() - self.started > self.deadline_s

    def result(self) -> CompletionResult:
        out = self.out
        text = (
            bytes(out[len(self.heal) :]).decode("utf-8", errors="ignore")
            if out.startswith(self.heal)
            else (out.decode("utf-8", errors="ignore"))
        )
        if self.single_line:
            text = text.split("\n", 1)[0]
        elif self.max_lines > 1:
            text = "\n".join(text.split("\n")[: self.max_lines])
        stop_word = ""
        for s in self.stop:
            if s in text:
                text, stop_word = text[: text.index(s)], s
        ended = self.ended or time.monotonic()
        first = self.first_token_at or ended
        return CompletionResult(
            text=text,
            finish_reason=self.finish,
            prompt_tokens=len(self.ids),
            completion_tokens=self.n_generated,
            cached_tokens=self.cached,
            stop_word=stop_word,
            timings={
                "prompt_n": len(self.ids) - self.cached,
                "prompt_ms": round((first - self.started) * 1000, 2),
                "predicted_n": self.n_generated,
                "predicted_ms": round((ended - first) * 1000, 2),
            },
        )


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two sequences share (what a KV cache can keep)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
