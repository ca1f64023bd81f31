"""Scores of a completion against its target line."""

from __future__ import annotations

import difflib


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def exact_match(prediction: str, target: str) -> bool:
    return _norm(prediction) == _norm(target)


def edit_similarity(prediction: str, target: str) -> float:
    """1 - normalised edit distance, in [0, 1] (difflib's ratio, on stripped lines)."""
    a, b = _norm(prediction), _norm(target)
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
