"""Exact and near-duplicate detection, and the clusters the held-out split must not cut.

Exact: a hash of the content with all whitespace removed. Near: datasketch MinHash + LSH over
5-token shingles. The shingles are hashed in numpy (crc32 per token, then a rolling combination),
so the per-file Python work is a handful of vectorised calls instead of one call per shingle;
datasketch then applies its own permutations and bands.
"""

from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np

WORD = re.compile(rb"\w+")
_WHITESPACE = re.compile(rb"\s+")
_MASK32 = np.uint64(0xFFFFFFFF)
_MIX = np.uint64(0x9E3779B1)  # odd 32-bit multiplier (golden ratio): order matters inside a shingle
_TOKEN_BYTES = bytes(range(48, 58)) + bytes(range(65, 91)) + bytes(range(97, 123)) + b"_ \t\r\n\f\v"


def content_key(data: bytes) -> str:
    """Same key for files that differ only in whitespace (indentation, line endings, blank lines)."""
    return hashlib.blake2b(_WHITESPACE.sub(b"", data), digest_size=16).hexdigest()


def tokens_estimate(data: bytes, words: int) -> int:
    """Rough BPE token count for code: words plus punctuation characters. The real count depends on
    the base model's tokenizer, which training reports; this is for the report and the minimum."""
    return words + len(data.translate(None, _TOKEN_BYTES))


def shingle_hashes(words: list[bytes], size: int) -> np.ndarray:
    """32-bit hashes of every run of `size` consecutive words (unique, unsorted order irrelevant)."""
    if not words:
        return np.zeros(1, dtype=np.uint64)
    th = np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=len(words))
    n = len(th) - size + 1
    if n < 1:
        n, size = 1, len(th)
    sh = th[:n].copy()
    for k in range(1, size):
        sh = sh * _MIX + th[k : k + n]
    sh ^= sh >> np.uint64(32)
    return np.unique(sh & _MASK32)


def _identity(value):
    return value


class NearDuplicates:
    """MinHash LSH index; `match` returns the key of an indexed near-twin, or None."""

    def __init__(self, threshold: float, num_perm: int = 128, shingle: int = 5, seed: int = 1) -> None:
        from datasketch import MinHash, MinHashLSH

        self.shingle = shingle
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.template = MinHash(num_perm=num_perm, seed=seed, hashfunc=_identity)

    def signature(self, words: list[bytes]):
        from datasketch import LeanMinHash

        minhash = self.template.copy()
        minhash.update_batch(shingle_hashes(words, self.shingle).tolist())
        return LeanMinHash(minhash)

    def match(self, signature) -> str | None:
        found = self.lsh.query(signature)
        return min(found) if found else None

    def add(self, key: str, signature) -> None:
        self.lsh.insert(key, signature)


class Clusters:
    """Union-find over file keys: near-duplicates that are kept share a cluster, and a cluster
    goes whole to one side of the split."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        root = self.parent.setdefault(key, key)
        while root != self.parent[root]:
            root = self.parent[root]
        while key != root:  # path compression
            self.parent[key], key = root, self.parent[key]
        return root

    def join(self, new: str, existing: str) -> str:
        """Put `new` in the cluster of `existing`; the root stays the first file seen, so a file's
        cluster (and so its side of the split) is final as soon as it is added."""
        root = self.find(existing)
        self.parent[new] = root
        return root
