"""Build a dataset folder from mirrors at recorded SHAs: filter, scrub, dedup, split, write JSONL,
and a report (the stage runner writes the manifest).

Pure stage code: takes paths and options, returns a summary; Django rows are handled by services.
Order of work, cheapest first: tree-entry filters (no bytes read), content filters, exact dedup,
secret scrubbing (kept files only), near-duplicate MinHash, split, write.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from appliance.errors import DatasetError, MirrorError
from appliance.paths import sha256_file
from trainer.datasets import accepted, dedup, filters
from trainer.datasets.split import SPLIT_METHODS, split_plan
from trainer.mirrors.git import History, TreeEntry, blobs_read, history_read, tree_list
from trainer.tools.languages import ALL_LANGUAGES

logger = logging.getLogger(__name__)

VENDORED_DIRS = filters.VENDORED_DIRS  # kept for callers of the first version
TOKENS_METHOD = "estimate: words + punctuation characters (the base model's tokenizer gives the real count)"
REPORT_LIST_LIMIT = 5000  # rows of the dropped / secrets lists kept in the database; report.json has all


class DatasetRejected(DatasetError):
    """The build ran but its result is unusable; carries the result so the report can be shown."""

    def __init__(self, message: str, result: BuildResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class DatasetOptions:
    max_file_bytes: int = 1_000_000
    heldout_percent: int = 15
    min_train_files: int = 1
    languages: tuple[str, ...] = ()  # empty: every recognised language
    exclude_globs: tuple[str, ...] = ()  # gitignore syntax, applied to every repository
    min_tokens: int = 2_000
    max_duplicate_ratio: float = 0.5
    near_dup_threshold: float = 0.85
    near_duplicates: str = "drop"  # drop: keep one file per cluster; keep: keep all, one side of the split
    # auto: per repository, hold out the files changed most recently where its history tells them
    # apart, else a fixed share by hash; recent: the same, failing where a history cannot; hash: never recency
    split: str = "auto"
    # Completions developers accepted within the telemetry retention window, as training-only samples
    # (trainer/datasets/accepted.py); needs a telemetry policy that collects content.
    accepted_completions: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.heldout_percent <= 50:
            raise DatasetError("heldout_percent must be between 1 and 50.")
        if self.max_file_bytes < 1:
            raise DatasetError("max_file_bytes must be positive.")
        unknown = sorted(set(self.languages) - set(ALL_LANGUAGES))
        if unknown:
            raise DatasetError(f"Unknown languages: {', '.join(unknown)}. Known: {', '.join(ALL_LANGUAGES)}.")
        if not 0.0 < self.near_dup_threshold < 1.0:
            raise DatasetError("near_dup_threshold must be between 0 and 1 (a Jaccard similarity).")
        if not 0.0 <= self.max_duplicate_ratio <= 1.0:
            raise DatasetError("max_duplicate_ratio must be between 0 and 1.")
        if self.near_duplicates not in {"drop", "keep"}:
            raise DatasetError("near_duplicates must be 'drop' or 'keep'.")
        if self.min_tokens < 0:
            raise DatasetError("min_tokens cannot be negative.")
        if self.split not in SPLIT_METHODS:
            raise DatasetError(f"split must be one of {', '.join(SPLIT_METHODS)}.")


@dataclass
class SourceRepo:
    name: str
    mirror: Path
    sha: str
    exclude_globs: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()  # the repository's own choice; empty: the dataset's options


@dataclass
class BuildResult:
    commits: dict[str, str]
    train_files: int = 0
    heldout_files: int = 0
    train_bytes: int = 0
    heldout_bytes: int = 0
    train_tokens: int = 0
    heldout_tokens: int = 0
    seen_files: int = 0
    seen_bytes: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_bytes: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    by_language: dict = field(default_factory=lambda: defaultdict(lambda: Counter()))
    by_repo: dict = field(
        default_factory=lambda: defaultdict(lambda: {"skipped": Counter(), "totals": Counter()})
    )
    duplicates: dict = field(default_factory=dict)
    secrets_by_kind: Counter = field(default_factory=Counter)
    secret_hits: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    heldout: list[dict] = field(default_factory=list)
    split: dict = field(default_factory=dict)  # the rule that chose the held-out files, per repository
    files: list[dict] = field(default_factory=list)  # every file seen: the rows of the searchable list
    accepted: dict = field(default_factory=dict)  # accepted completions' counts; empty: not asked for
    phases: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def report(self, *, full: bool = False) -> dict:
        """The report as stored: counts and bytes per reason, language and repository, tokens,
        duplicates, secrets by kind, dropped and held-out files. Lists are capped unless `full`."""
        cap = None if full else REPORT_LIST_LIMIT
        kept = self.train_files + self.heldout_files
        return {
            "commits": self.commits,
            "seen_files": self.seen_files,
            "seen_bytes": self.seen_bytes,
            "kept_files": kept,
            "kept_bytes": self.train_bytes + self.heldout_bytes,
            "train_files": self.train_files,
            "heldout_files": self.heldout_files,
            "train_bytes": self.train_bytes,
            "heldout_bytes": self.heldout_bytes,
            "tokens": {
                "train": self.train_tokens,
                "heldout": self.heldout_tokens,
                "total": self.train_tokens + self.heldout_tokens,
                "method": TOKENS_METHOD,
            },
            "skipped": dict(self.skipped.most_common()),
            "skipped_bytes": {k: self.skipped_bytes[k] for k, _ in self.skipped.most_common()},
            "languages": dict(self.languages.most_common()),
            "by_language": {k: dict(v) for k, v in sorted(self.by_language.items())},
            "by_repo": {
                k: {**dict(v["totals"]), "skipped": dict(v["skipped"].most_common())}
                for k, v in sorted(self.by_repo.items())
            },
            "duplicates": self.duplicates,
            "secrets": {
                "total": sum(self.secrets_by_kind.values()),
                "files": len({(h["repo"], h["path"]) for h in self.secret_hits}),
                "by_kind": dict(self.secrets_by_kind.most_common()),
                "hits": self.secret_hits[:cap],
                "hits_truncated": cap is not None and len(self.secret_hits) > cap,
            },
            "dropped": self.dropped[:cap],
            "dropped_truncated": cap is not None and len(self.dropped) > cap,
            "heldout": self.heldout[:cap],
            "split": self.split,
            "accepted": self.accepted,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "seconds": self.seconds,
        }


def display_path(path: str) -> str:
    """A path as text that can be stored and shown: undecodable bytes become \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _gitignore(patterns) -> object | None:
    patterns = [p for p in patterns if p.strip() and not p.lstrip().startswith("#")]
    if not patterns:
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(patterns)


def _lfs_matcher(source: SourceRepo, entries: list[TreeEntry]) -> object | None:
    attrs = [
        e
        for e in entries
        if PurePosixPath(e.path).name == ".gitattributes"
        and not e.is_symlink
        and e.kind == "blob"
        and (e.size or 0) < 1_000_000
    ]
    patterns = []
    for entry, (_, data) in zip(attrs, blobs_read(source.mirror, [e.oid for e in attrs]), strict=True):
        base = str(PurePosixPath(entry.path).parent)
        for pattern in filters.lfs_patterns(data):
            if base == ".":
                patterns.append(pattern)
            else:
                patterns.append(
                    f"/{base}/{pattern.lstrip('/')}" if "/" in pattern.strip("/") else f"/{base}/**/{pattern}"
                )
    return _gitignore(patterns)


@dataclass
class _Kept:
    repo: str
    path: str
    language: str
    size: int
    record: str  # the JSONL line
    tokens: int
    cluster: str
    secrets: int


class _Builder:
    def __init__(
        self, options: DatasetOptions, out_dir: Path, progress, feed: accepted.AcceptedFeed | None = None
    ) -> None:
        from trainer.datasets.secrets import SecretScrubber

        self.options = options
        self.feed = feed
        self.sources: list[SourceRepo] = []
        self.heldout_files: list[dict] = []
        self.out_dir = out_dir
        self.progress = progress
        self.languages = frozenset(options.languages)
        self.scrubber = SecretScrubber()
        self.near = dedup.NearDuplicates(options.near_dup_threshold)
        self.clusters = dedup.Clusters()
        self.exact: dict[str, str] = {}
        self.kept: list[_Kept] = []
        self.histories: dict[str, History] = {}
        self.dup_exact = self.dup_near = self.dedup_checked = 0
        self.result: BuildResult

    def drop(self, repo: str, path: str, size: int, reason: str, detail: str, language: str = "") -> None:
        r = self.result
        shown = display_path(path)
        r.skipped[reason] += 1
        r.skipped_bytes[reason] += size
        r.by_repo[repo]["skipped"][reason] += 1
        r.dropped.append({"repo": repo, "path": shown, "reason": reason, "bytes": size, "detail": detail})
        r.files.append(
            {
                "repo": repo,
                "path": shown,
                "language": language,
                "size": size,
                "split": "dropped",
                "reason": reason,
                "detail": detail[:300],
                "secrets": 0,
            }
        )

    def run(self, sources: list[SourceRepo]) -> BuildResult:
        started = time.monotonic()
        self.result = BuildResult(commits={s.name: s.sha for s in sources})
        listed = []
        t = time.monotonic()
        for source in sources:
            try:
                entries = tree_list(source.mirror, source.sha)
            except MirrorError as exc:
                raise DatasetError(
                    f"Repository {source.name} cannot be read at {source.sha[:12]}: {exc} "
                    f"Sync it again (mirror_sync {source.name}) or remove it from the dataset."
                ) from exc
            listed.append((source, sorted(entries, key=lambda e: e.path)))
            self._history(source)
        self.total = sum(len(e) for _, e in listed)
        self.done = 0
        self.result.phases["list"] += time.monotonic() - t
        self.sources = sources
        for source, entries in listed:
            self._source(source, entries)
        ratio = self._finish()
        if self.feed is not None:
            self._accepted(self.feed)
        self._check(ratio)
        self.result.seconds = round(time.monotonic() - started, 3)
        return self.result

    def _history(self, source: SourceRepo) -> None:
        """When each file was last changed (one `git log` pass), for the split by recency."""
        if self.options.split == "hash":
            return
        t = time.monotonic()
        try:
            self.histories[source.name] = history_read(source.mirror, source.sha)
        except MirrorError as exc:
            raise DatasetError(f"The history of repository {source.name} cannot be read: {exc}") from exc
        self.result.phases["history"] += time.monotonic() - t

    def _tick(self, n: int = 1) -> None:
        self.done += n
        if self.progress and (self.done % 64 == 0 or self.done == self.total):
            self.progress(self.done, self.total)

    def _source(self, source: SourceRepo, entries: list[TreeEntry]) -> None:
        r, o = self.result, self.options
        t = time.monotonic()
        excluded = _gitignore([*o.exclude_globs, *source.exclude_globs])
        self.languages = frozenset(source.languages or o.languages)
        try:
            lfs = _lfs_matcher(source, entries)
        except MirrorError as exc:
            raise DatasetError(f"Repository {source.name} cannot be read: {exc}") from exc
        totals = r.by_repo[source.name]["totals"]
        wanted: list[tuple[TreeEntry, filters.Verdict]] = []
        for entry in entries:
            size = entry.size or 0
            r.seen_files += 1
            r.seen_bytes += size
            totals["seen_files"] += 1
            totals["seen_bytes"] += size
            verdict = filters.path_verdict(
                entry, max_bytes=o.max_file_bytes, languages=self.languages, excluded=excluded, lfs=lfs
            )
            if verdict.reason:
                self.drop(
                    source.name, entry.path, size, verdict.reason, verdict.detail, verdict.language or ""
                )
                self._tick()
            else:
                wanted.append((entry, verdict))
        r.phases["filter-paths"] += time.monotonic() - t
        t = time.monotonic()
        oids = list(dict.fromkeys(e.oid for e, _ in wanted))
        by_oid: dict[str, list[tuple[TreeEntry, filters.Verdict]]] = defaultdict(list)
        for entry, verdict in wanted:
            by_oid[entry.oid].append((entry, verdict))
        try:
            for oid, data in blobs_read(source.mirror, oids):
                for entry, verdict in by_oid[oid]:
                    self._file(source.name, entry, verdict, data)
                    self._tick()
        except MirrorError as exc:
            raise DatasetError(f"Repository {source.name} cannot be read: {exc}") from exc
        r.phases["read-filter-scrub-dedup"] += time.monotonic() - t

    def _file(self, repo: str, entry: TreeEntry, verdict: filters.Verdict, data: bytes) -> None:
        size = len(data)
        verdict = filters.content_verdict(data, verdict, languages=self.languages)
        if verdict.reason:
            self.drop(repo, entry.path, size, verdict.reason, verdict.detail, verdict.language or "")
            return
        language = verdict.language or "text"
        self.dedup_checked += 1
        key = dedup.content_key(data)
        twin = self.exact.get(key)
        if twin is not None:
            self.dup_exact += 1
            self.drop(repo, entry.path, size, "duplicate", f"same content as {twin}", language)
            return
        file_key = f"{repo}:{display_path(entry.path)}"
        self.exact[key] = file_key
        text, hits = self.scrubber.scrub(data.decode("utf-8"), entry.path)
        scrubbed = text.encode("utf-8") if hits else data
        words = dedup.WORD.findall(scrubbed)
        signature = self.near.signature(words)
        twin = self.near.match(signature)
        if twin is not None:
            self.dup_near += 1
            if self.options.near_duplicates == "drop":
                self.drop(
                    repo,
                    entry.path,
                    size,
                    "near-duplicate",
                    f"similar to {twin} (Jaccard ≥ {self.options.near_dup_threshold})",
                    language,
                )
                return
            cluster = self.clusters.join(file_key, twin)
        else:
            cluster = self.clusters.find(file_key)
        self.near.add(file_key, signature)
        for hit in hits:
            self.result.secrets_by_kind[hit.kind] += 1
            self.result.secret_hits.append(
                {"repo": repo, "path": display_path(entry.path), "line": hit.line, "kind": hit.kind}
            )
            logger.debug(
                "secret scrubbed: %s:%s line %d (%s)", repo, display_path(entry.path), hit.line, hit.kind
            )
        record = (
            json.dumps(
                {"repo": repo, "path": display_path(entry.path), "language": language, "text": text},
                ensure_ascii=False,
            )
            + "\n"
        )
        self.kept.append(
            _Kept(
                repo,
                entry.path,
                language,
                size,
                record,
                dedup.tokens_estimate(scrubbed, len(words)),
                cluster,
                len(hits),
            )
        )

    def _finish(self) -> float:
        """Split and write train/heldout JSONL; returns the duplicate ratio `_check` judges."""
        r, o = self.result, self.options
        t = time.monotonic()
        # Split by cluster: near-twins kept in "keep" mode land on the same side.
        heldout_clusters, r.split = split_plan(
            self.kept, self.histories, percent=o.heldout_percent, option=o.split
        )
        with (
            (self.out_dir / "train.jsonl").open("w") as train,
            (self.out_dir / "heldout.jsonl").open("w") as held,
        ):
            for k in self.kept:
                is_heldout = k.cluster in heldout_clusters
                (held if is_heldout else train).write(k.record)
                split = "heldout" if is_heldout else "train"
                if is_heldout:
                    r.heldout_files += 1
                    r.heldout_bytes += k.size
                    r.heldout_tokens += k.tokens
                    r.heldout.append({"repo": k.repo, "path": display_path(k.path)})
                    if self.feed is not None:  # accepted completions are checked against them
                        self.heldout_files.append(json.loads(k.record))
                else:
                    r.train_files += 1
                    r.train_bytes += k.size
                    r.train_tokens += k.tokens
                r.languages[k.language] += 1
                lang = r.by_language[k.language]
                lang["files"] += 1
                lang["bytes"] += k.size
                lang["tokens"] += k.tokens
                totals = r.by_repo[k.repo]["totals"]
                totals["kept_files"] += 1
                totals["kept_bytes"] += k.size
                totals["tokens"] += k.tokens
                r.files.append(
                    {
                        "repo": k.repo,
                        "path": display_path(k.path),
                        "language": k.language,
                        "size": k.size,
                        "split": split,
                        "reason": "",
                        "detail": "",
                        "secrets": k.secrets,
                    }
                )
        checked = self.dedup_checked
        ratio = (self.dup_exact + self.dup_near) / checked if checked else 0.0
        r.duplicates = {
            "checked_files": checked,
            "exact": self.dup_exact,
            "near": self.dup_near,
            "ratio": round(ratio, 4),
            "near_threshold": o.near_dup_threshold,
            "near_mode": o.near_duplicates,
            "clusters_split_together": sum(
                1 for c in Counter(k.cluster for k in self.kept).values() if c > 1
            ),
        }
        r.phases["split-write"] += time.monotonic() - t
        return ratio

    def _accepted(self, feed: accepted.AcceptedFeed) -> None:
        """accepted.jsonl: the accepted completions that may train, checked against the held-out files."""
        t = time.monotonic()
        prepared = accepted.accepted_prepare(
            feed.records,
            heldout=accepted.HeldOut(self.heldout_files),
            exclude_globs=[*self.options.exclude_globs, *(g for s in self.sources for g in s.exclude_globs)],
            policy_globs=feed.policy_globs,
            languages=self.options.languages,
            since=feed.since,
            scrubber=self.scrubber,
        )
        accepted.accepted_write(self.out_dir, prepared)
        self.result.accepted = prepared.report()
        self.result.phases["accepted"] += time.monotonic() - t

    def _check(self, ratio: float) -> None:
        try:
            self._check_numbers(ratio)
        except DatasetError as exc:
            raise DatasetRejected(str(exc), self.result) from None

    def _check_numbers(self, ratio: float) -> None:
        r, o = self.result, self.options
        kept = r.train_files + r.heldout_files
        if kept == 0:
            raise DatasetError(
                f"Nothing is left after filtering: all {r.seen_files} files were left out "
                f"({', '.join(f'{k}: {v}' for k, v in r.skipped.most_common())}). Check the language selection "
                f"and exclusion patterns, or choose repositories with source code."
            )
        if ratio > o.max_duplicate_ratio:
            raise DatasetError(
                f"Too much replication: {self.dup_exact + self.dup_near} of {self.dedup_checked} files "
                f"({ratio:.0%}) are copies ({self.dup_exact}) or near-copies ({self.dup_near}) of other files; "
                f"the limit is {o.max_duplicate_ratio:.0%}. Exclude the copied directories or raise the limit."
            )
        tokens = r.train_tokens + r.heldout_tokens
        if tokens < o.min_tokens:
            raise DatasetError(
                f"Too little data: about {tokens:,} tokens in {kept} files after filtering "
                f"({r.seen_files} files seen); Hearth needs at least {o.min_tokens:,}. Add repositories, select "
                f"more languages or loosen the exclusions."
            )
        if r.train_files < o.min_train_files or r.heldout_files == 0:
            raise DatasetError(
                f"Too little data: {r.train_files} training and {r.heldout_files} held-out files after filtering; "
                f"Hearth needs at least {o.min_train_files} and 1."
            )


def dataset_build_files(
    sources: list[SourceRepo],
    out_dir: Path,
    options: DatasetOptions,
    progress: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Read every source at its SHA, keep clean source files, write train/heldout JSONL, the full
    report (the stage runner writes the manifest). Raises DatasetError with the numbers when the result is unusable.
    With `accepted_completions`, the provider's accepted completions go to accepted.jsonl (training only)."""
    feed = accepted.accepted_feed() if options.accepted_completions else None  # refused before any work
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = _Builder(options, out_dir, progress, feed).run(sources)
    except DatasetRejected as exc:
        (out_dir / "report.json").write_text(
            json.dumps(exc.result.report(full=True), indent=1, ensure_ascii=False)
        )
        raise
    report = result.report(full=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return result


def dataset_manifest_fields(result: BuildResult, options: DatasetOptions, out_dir: Path) -> dict:
    """What the dataset's manifest records (the stage runner writes it, with the libraries and the
    timings): the commits read, the options, the counts, the split's rule and the files written, by sha256."""
    return {
        "commits": result.commits,
        "options": asdict(options),
        "counts": {
            k: v
            for k, v in result.report().items()
            if k not in {"dropped", "commits", "heldout", "secrets", "by_repo", "by_language", "split"}
        },
        "split": result.split,
        "files": {
            name: sha256_file(out_dir / name)
            for name in ("train.jsonl", "heldout.jsonl", accepted.ACCEPTED_FILE, "report.json")
            if (out_dir / name).exists()
        },
    }
