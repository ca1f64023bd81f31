"""Scores of a completion against its target line."""

from __future__ import annotations

import difflib
import math


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


def mcnemar_exact_p(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value for paired binary outcomes: the chance of a split at least
    this lopsided among the `wins + losses` discordant pairs if neither side were better."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference_ci(a: list[int], b: list[int], z: float = 1.96) -> tuple[float, float]:
    """95% interval of mean(a) - mean(b) for paired 0/1 outcomes on the same tasks (normal
    approximation on the per-task differences)."""
    n = len(a)
    if n == 0 or n != len(b):
        return (0.0, 0.0)
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / max(1, n - 1)
    half = z * math.sqrt(var / n)
    return (mean - half, mean + half)
