"""Fill-in-the-middle samples in the base model's own format, packed into fixed-length sequences.

Every token of a packed sequence is a real token (no padding): samples are joined with the
end-of-text token and the stream is cut into `seq_len` pieces.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from appliance.llm.fim import FimFormat
from appliance.llm.prompt import comment_for, context_block


@dataclass(frozen=True)
class Piece:
    """Part of a sample: either literal text or one special token (by its text)."""

    text: str
    special: bool = False


def _windows(text: str, max_chars: int) -> list[str]:
    """Cut a file into line-aligned windows of at most about `max_chars` characters."""
    lines = text.splitlines(keepends=True)
    out, cur, size = [], [], 0
    for line in lines:
        if cur and size + len(line) > max_chars:
            out.append("".join(cur))
            cur, size = [], 0
        cur.append(line)
        size += len(line)
    if cur:
        out.append("".join(cur))
    return out


def _line_span(text: str, rng: random.Random, multiline: bool) -> tuple[int, int] | None:
    """Character span [start, end) covering one or several whole lines (without the final newline)."""
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n" and i + 1 < len(text)]
    candidates = [
        s for s in starts if text[s : text.find("\n", s) if "\n" in text[s:] else len(text)].strip()
    ]
    if not candidates:
        return None
    first = rng.choice(candidates)
    k = starts.index(first)
    n_lines = rng.randint(2, 8) if multiline else 1
    last = min(k + n_lines, len(starts)) - 1
    end = text.find("\n", starts[last])
    end = len(text) if end == -1 else end
    return first, end


def fim_pieces(
    text: str, fmt: FimFormat, rng: random.Random, *, spm: bool, multiline: bool
) -> list[Piece] | None:
    span = _line_span(text, rng, multiline)
    if span is None:
        return None
    start, end = span
    return fim_arrange(text[:start], text[start:end], text[end:], fmt, spm=spm)


def fim_arrange(prefix: str, middle: str, suffix: str, fmt: FimFormat, *, spm: bool) -> list[Piece]:
    """One FIM sample in `fmt`: prefix-suffix-middle order, or suffix-prefix-middle with `spm`."""
    P, S, M = Piece(fmt.prefix, True), Piece(fmt.suffix, True), Piece(fmt.middle, True)
    if spm:
        return [P, S, Piece(suffix), M, Piece(prefix), Piece(middle)]
    return [P, Piece(prefix), S, Piece(suffix), M, Piece(middle)]


# An accepted completion's share of a window: its middle at most half, then the prefix twice the suffix.
ACCEPTED_MIDDLE_SHARE = 0.5
ACCEPTED_PREFIX_SHARE = 2 / 3


def _accepted_fit(record: dict, window_chars: int) -> tuple[str, str, str]:
    """Prefix, middle and suffix cut to about `window_chars`: the code nearest the cursor kept, the
    prefix from a line's start and the suffix to a line's end where there is room for a whole line."""
    middle = record["middle"][: int(window_chars * ACCEPTED_MIDDLE_SHARE)]
    room = max(0, window_chars - len(middle))
    prefix = record["prefix"][max(0, len(record["prefix"]) - int(room * ACCEPTED_PREFIX_SHARE)) :]
    suffix = record["suffix"][: room - len(prefix)]
    if len(prefix) < len(record["prefix"]) and "\n" in prefix[:-1]:
        prefix = prefix[prefix.index("\n") + 1 :]
    if len(suffix) < len(record["suffix"]) and "\n" in suffix[1:]:
        suffix = suffix[: suffix.rindex("\n") + 1]
    return prefix, middle, suffix


def accepted_samples(
    records: Iterable[dict], fmt: FimFormat | None, rng: random.Random, *, spm_rate: float, window_chars: int
) -> list[list[Piece]]:
    """One sample per accepted completion (a dataset's accepted.jsonl): its prefix, its accepted (or
    surviving) text as the middle and its suffix, in the base's FIM format, cut to a window. Without a
    format (or with FIM off), the prefix then the middle, as left-to-right completion."""
    samples = []
    for record in records:
        prefix, middle, suffix = _accepted_fit(record, window_chars)
        if fmt is None:
            samples.append([Piece(prefix + middle)])
        else:
            samples.append(fim_arrange(prefix, middle, suffix, fmt, spm=rng.random() < spm_rate))
    return samples


# Snippets take this share of a context sample's characters; its own code the rest.
CONTEXT_SHARE = 0.4
ContextOf = Callable[[dict, str], list[tuple[str, str]]]


def context_pieces(snippets: list[tuple[str, str]], path: str, file_sep: str | None) -> list[Piece]:
    """Snippets of other files before a sample, exactly as the serving prompt builder writes them:
    each after the file-separator token then the current file's path, or as path-comment blocks."""
    if not snippets:
        return []
    if file_sep is None:
        comment = comment_for(path)
        return [Piece("".join(context_block(p, t, file_sep=False, comment=comment) for p, t in snippets))]
    pieces: list[Piece] = []
    for p, t in snippets:
        pieces += [Piece(file_sep, True), Piece(context_block(p, t, file_sep=True))]
    return [*pieces, Piece(file_sep, True), Piece(f"{path}\n")]


def samples_build(
    files: Iterable[dict],
    fmt: FimFormat | None,
    *,
    fim_rate: float,
    spm_rate: float,
    multiline_rate: float,
    window_chars: int,
    seed: int,
    context_rate: float = 0.0,
    context_of: ContextOf | None = None,
    file_sep: str | None = None,
) -> list[list[Piece]]:
    """One list of pieces per window of every file; FIM where a format exists and the dice say so.
    With `context_of(record, text_before_cursor)`, a `context_rate` share of the windows are cut
    shorter and carry snippets of other files in front (the rest of the window is a sample of its own)."""
    rng = random.Random(seed)
    samples: list[list[Piece]] = []

    def one(window: str, front: list[Piece]) -> None:
        pieces = None
        if fmt is not None and rng.random() < fim_rate:
            pieces = fim_pieces(
                window, fmt, rng, spm=rng.random() < spm_rate, multiline=rng.random() < multiline_rate
            )
        samples.append(front + (pieces or [Piece(window)]))

    for record in files:
        for window in _windows(record["text"], window_chars):
            if context_of is None or rng.random() >= context_rate:
                one(window, [])
                continue
            head, *rest = _windows(window, int(window_chars * (1 - CONTEXT_SHARE)))
            snippets = context_of(record, head)
            one(head, context_pieces(snippets, record["path"], file_sep))
            for piece in rest:
                one(piece, [])
    return samples


class PieceEncoder:
    """Turns pieces into token ids; literal text never becomes a special token."""

    def __init__(self, tokenizer, eot_id: int):
        self.tokenizer = tokenizer
        self.eot_id = eot_id
        self._special: dict[str, int] = {}

    def special_id(self, text: str) -> int:
        if text not in self._special:
            self._special[text] = self.tokenizer.convert_tokens_to_ids(text)
        return self._special[text]

    def encode_many(self, samples: list[list[Piece]]) -> list[list[int]]:
        texts = [p.text for s in samples for p in s if not p.special]
        encoded = iter(
            self.tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            if texts
            else []
        )
        out = []
        for sample in samples:
            ids: list[int] = []
            for piece in sample:
                ids.extend([self.special_id(piece.text)] if piece.special else next(encoded))
            ids.append(self.eot_id)
            out.append(ids)
        return out


def pack(sequences: list[list[int]], seq_len: int) -> tuple[list[list[int]], dict]:
    """Concatenate and cut into `seq_len` rows; the ragged tail is dropped, nothing is padded."""
    stream = [t for s in sequences for t in s]
    n = len(stream) // seq_len
    rows = [stream[i * seq_len : (i + 1) * seq_len] for i in range(n)]
    if not rows and stream:  # less than one sequence of data: train on what there is
        rows, n = [stream], 1
    stats = {
        "tokens": len(stream),
        "sequences": n,
        "dropped_tail_tokens": max(0, len(stream) - n * seq_len),
        "padding_tokens": 0,
        "padding_fraction": 0.0,
    }
    return rows, stats
