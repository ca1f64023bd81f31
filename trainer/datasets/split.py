"""Which kept files are held out for evaluation: per repository, the files changed most recently
where its history can tell them apart (so evaluation looks like the code written next), a fixed
share chosen by hash where it cannot. Near-duplicate clusters go whole to one side, whichever rule
chose them, so a held-out file's near-twin never lands in training.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from appliance.errors import DatasetError
from trainer.mirrors.git import History

SPLIT_METHODS = ("auto", "recent", "hash")
# Why a repository kept the hash split, as the report records it.
HASH_REASONS = {
    "chosen": "the dataset's options ask for it",
    "one-commit": "the repository has one commit",
    "same-time": "its files were all last changed at the same time",
}


class KeptFile(Protocol):
    repo: str
    path: str
    cluster: str  # "repo:path" of the cluster's first file


@dataclass(frozen=True)
class RepoSplit:
    method: str  # recent | hash
    reason: str = ""  # for hash: a key of HASH_REASONS
    # recent: the ISO date from which files changed were held out (near-copies held with them may be older)
    heldout_since: str | None = None

    def report(self) -> dict:
        row = {"method": self.method, "heldout_since": self.heldout_since}
        return {**row, "reason": self.reason} if self.reason else row


def split_score(repo: str, path: str) -> int:
    """A fixed pseudo-random number per file: the hash split holds out those below the share."""
    digest = hashlib.sha256(f"{repo}:{path}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:4], "big")


def _cluster_score(cluster: str) -> int:
    repo, _, path = cluster.partition(":")
    return split_score(repo, path)


def _method(repo: str, files: list[KeptFile], history: History | None, option: str) -> RepoSplit:
    if option == "hash" or history is None:
        return RepoSplit("hash", "chosen")
    if len({history.changed.get(f.path, 0) for f in files}) >= 2:
        return RepoSplit("recent")
    reason = "one-commit" if history.commits <= 1 else "same-time"
    if option == "recent":
        raise DatasetError(
            f"Repository {repo} cannot be split by recency: {HASH_REASONS[reason]}. "
            "Build the dataset with the split 'auto' or 'hash'."
        )
    return RepoSplit("hash", reason)


def _recent_clusters(
    files: list[KeptFile], changed: dict[str, int], percent: int, held: set[str]
) -> tuple[set[str], str | None]:
    """Clusters of `files`, newest change first, until about `percent` of the files are held out
    (those already held through a cluster shared with another repository count); never the last
    files the repository has for training. With them, the date of the oldest change that chose one."""
    target = max(1, round(len(files) * percent / 100))
    newest: dict[str, int] = defaultdict(int)
    size: dict[str, int] = defaultdict(int)
    for f in files:
        newest[f.cluster] = max(newest[f.cluster], changed.get(f.path, 0))
        size[f.cluster] += 1
    count = sum(size[c] for c in size if c in held)
    chosen: set[str] = set()
    for cluster in sorted(size.keys() - held, key=lambda c: (-newest[c], _cluster_score(c))):
        if count >= target:
            break
        if count + size[cluster] < len(files):
            chosen.add(cluster)
            count += size[cluster]
    times = [newest[c] for c in chosen or (size.keys() & held)]
    return chosen, datetime.fromtimestamp(min(times), UTC).date().isoformat() if times else None


def split_plan(
    kept: list[KeptFile], histories: dict[str, History], *, percent: int, option: str = "auto"
) -> tuple[set[str], dict]:
    """The held-out clusters and the report's `split` entry. Hash-split repositories first choose
    their clusters by score (as every build did before recency), recent ones then fill their share,
    and a hash-split repository with nothing held out yet gives up its lowest-scored cluster."""
    per_repo: dict[str, list[KeptFile]] = defaultdict(list)
    for k in kept:
        per_repo[k.repo].append(k)
    methods = {repo: _method(repo, files, histories.get(repo), option) for repo, files in per_repo.items()}
    hashed = [repo for repo, m in methods.items() if m.method == "hash"]
    held = {k.cluster for repo in hashed for k in per_repo[repo] if _cluster_score(k.cluster) % 100 < percent}
    for repo, m in methods.items():
        if m.method == "recent":
            chosen, since = _recent_clusters(per_repo[repo], histories[repo].changed, percent, held)
            held |= chosen
            methods[repo] = RepoSplit("recent", heldout_since=since)
    for repo in hashed:  # a small repository still holds out one cluster
        clusters = {k.cluster for k in per_repo[repo]}
        if len(per_repo[repo]) >= 2 and len(clusters) >= 2 and not clusters & held:
            held.add(min(clusters, key=_cluster_score))
    used = {m.method for m in methods.values()}
    overall = "mixed" if len(used) > 1 else next(iter(used), "hash")
    by_repo = {repo: m.report() for repo, m in sorted(methods.items())}
    return held, {"method": overall, "percent": percent, "by_repo": by_repo}
