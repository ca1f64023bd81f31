"""What a suggestion must never contain (content exclusion lives in appliance.fields.path_excluded).

- Response filters: a suggestion is cut just before the first email address, URL, IP address or
  credential it contains (what is left before it is still useful code). The patterns are the ones
  dataset scrubbing uses (appliance.secret_rules): a credential is any provider token the
  scrubber's rules know (several hundred formats), a private key, or a key or password assigned
  a literal.
- Insecure code (inference.insecure): a suggestion is cut before the first line that introduces an
  obvious vulnerability (SQL or a shell command built from strings, eval of input, unsafe
  deserialisation, TLS verification off, HTML built from strings, a password under MD5/SHA-1).
  Only this filter reads the prefix (when the caller passes it): a line the suggestion finishes is
  then judged whole.
- Verbatim filter: a suggestion sharing >= 150 whitespace-stripped characters with the admin's
  blocked-code corpus is discarded. The corpus is indexed once as a set of 64-bit polynomial hashes
  of every 150-character window (computed with numpy), so a check costs one hash per window of
  the suggestion, however large the corpus.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from appliance.secret_rules import CREDENTIAL, IP, URL, emails, rule_set
from inference.insecure import insecure_find

WINDOW = 150
_BASE = np.uint64(1_000_003)
_WS = re.compile(r"\s+")


def _first_email(text: str) -> int | None:
    return next((start for start, _, _ in emails(text)), None)


def _first_match(pattern):
    def find(text: str) -> int | None:
        match = pattern.search(text)
        return match.start() if match else None

    return find


def _first_credential(text: str) -> int | None:
    starts = [m.start() for m in (CREDENTIAL.search(text),) if m]
    hit = rule_set().first(text)
    if hit is not None:
        starts.append(hit.start)
    return min(starts, default=None)


def _first_insecure(text: str, prefix: str) -> int | None:
    found = insecure_find(text, prefix)
    return found.offset if found else None


def _text_only(find: Callable[[str], int | None]) -> Callable[[str, str], int | None]:
    return lambda text, prefix: find(text)


# Each finder names one filter and gets (suggestion, prefix); the suggestion is truncated at the
# earliest place any finds.
RESPONSE_FILTERS: dict[str, Callable[[str, str], int | None]] = {
    "email": _text_only(_first_email),
    "url": _text_only(_first_match(URL)),
    "ip": _text_only(_first_match(IP)),
    "credential": _text_only(_first_credential),
    "insecure": _first_insecure,
}


@dataclass
class FilterOutcome:
    text: str
    acted: list[str] = field(default_factory=list)  # names of the filters that changed the text
    discarded: bool = False


# ---------------------------------------------------------------- response filters


def response_filter(text: str, enabled: frozenset[str] | None = None, *, prefix: str = "") -> FilterOutcome:
    """Truncate `text` before the first sensitive match; name every filter that matched there.
    `enabled` names the filters the admin's policy keeps on (None: all of them); `prefix` is the
    code before the suggestion (the insecure-code filter judges a line the suggestion finishes
    whole)."""
    cut, acted = len(text), []
    for name, find in RESPONSE_FILTERS.items():
        if enabled is not None and name not in enabled:
            continue
        start = find(text, prefix)
        if start is not None:
            acted.append(name)
            cut = min(cut, start)
    if not acted:
        return FilterOutcome(text)
    kept = text[:cut]
    # Do not leave half a line ending in an opening quote or "=": drop the incomplete last line.
    if "\n" in kept:
        kept = kept[: kept.rindex("\n") + 1] if kept[kept.rindex("\n") + 1 :].strip() else kept
    else:
        kept = "" if kept.strip() else kept
    return FilterOutcome(kept, acted)


# ---------------------------------------------------------------- verbatim filter


def stripped(text: str) -> str:
    return _WS.sub("", text)


def window_hashes(text: str, window: int = WINDOW) -> np.ndarray:
    """64-bit polynomial hashes of every `window`-character window of `text` (already stripped)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = len(codes) - window + 1
    if n <= 0:
        return np.empty(0, dtype=np.uint64)
    out = np.zeros(n, dtype=np.uint64)
    power = np.uint64(1)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        for k in range(window - 1, -1, -1):
            out += codes[k : k + n] * power
            power = power * _BASE
    return out


class VerbatimIndex:
    """Hashes of every 150-character window of the blocked corpus, whitespace removed."""

    def __init__(self, texts: list[str]):
        parts = [window_hashes(stripped(t)) for t in texts]
        self.hashes = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.hashes)

    def matches(self, suggestion: str) -> bool:
        if not len(self.hashes):
            return False
        probe = window_hashes(stripped(suggestion))
        if not len(probe):
            return False
        at = np.minimum(np.searchsorted(self.hashes, probe), len(self.hashes) - 1)  # hashes are sorted
        return bool((self.hashes[at] == probe).any())


_index_lock = threading.Lock()
_index: tuple[tuple, VerbatimIndex] | None = None


def verbatim_index() -> VerbatimIndex:
    """The index of the current BlockedCode rows, rebuilt only when the rows change."""
    global _index
    from django.db.models import Count, Max

    from inference.models import BlockedCode

    stamp = tuple(BlockedCode.objects.aggregate(n=Count("id"), last=Max("id"), at=Max("created_at")).values())
    with _index_lock:
        if _index is None or _index[0] != stamp:
            texts = list(BlockedCode.objects.values_list("text", flat=True))
            _index = (stamp, VerbatimIndex(texts))
        return _index[1]


def suggestion_filter(
    text: str, *, index: VerbatimIndex | None, enabled: frozenset[str] | None = None, prefix: str = ""
) -> FilterOutcome:
    """Both filters in order: discard verbatim matches, then truncate sensitive strings and
    insecure code."""
    if text and index is not None and index.matches(text):
        return FilterOutcome("", ["verbatim"], discarded=True)
    return response_filter(text, enabled, prefix=prefix)
