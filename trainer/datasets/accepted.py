"""Accepted completions as training data: what developers accepted in their IDEs over the telemetry
retention window becomes fill-in-the-middle samples for training only (never held out, never
evaluated on).

The serving side stores completions, events and snapshots, and trainer must not import it, so
inference registers an `AcceptedProvider` here when it starts (`inference/apps.py`): the policy in
force and the accepted completions as plain dicts. Everything else is here and pure:

- used: a completion served with text (outcome ok or filtered), newer than the retention window,
  accepted (a Tabby `select`) or followed by a code snapshot (clients send one only for accepted code);
- left out: a path the dataset's or the serving policy's exclusion globs match, a language the
  dataset leaves out, a held-out file (by path, or by its code: see `HeldOut`), a secret that runs
  across the cursor; the rest is scrubbed like repository files;
- a snapshot, when its lines before the cursor are found in it once, says what survived: the text
  between them and the lines after the cursor is trained on (nothing there: deleted, left out); a
  snapshot that cannot be lined up leaves the accepted text as it was;
- duplicates (the same prefix tail and middle) are merged, each developer still counted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.errors import DatasetError
from appliance.fields import path_excluded, path_normalize
from trainer.tools.dataset_files import ACCEPTED_NAME

ACCEPTED_FILE = ACCEPTED_NAME  # in the dataset folder
MIN_CHECK_CHARS = (
    20  # text shorter than this (spaces aside) is too common to say it came from a held-out file
)
CONTEXT_LINES = 3  # the lines above (and below) the cursor compared with held-out files
DEDUP_LINES = 5  # the prefix's tail that, with the middle, makes two samples the same
MAX_SURVIVOR_CHARS = 4000  # more text than this between the anchors: the snapshot was not lined up
SERVED_OUTCOMES = {"ok", "filtered"}
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class FeedbackPolicy:
    """What the telemetry policy allows, as the dataset stage needs it."""

    telemetry: bool
    content: bool
    retention_days: int
    exclude_globs: tuple[str, ...] = ()  # the serving policy's content exclusion

    @property
    def label(self) -> str:
        return f"Include accepted completions (last {self.retention_days} days)"

    @property
    def refusal(self) -> str:
        """Why accepted completions cannot be used now, or ""."""
        if self.telemetry and self.content:
            return ""
        return (
            "Accepted completions cannot be included: the telemetry policy does not collect content "
            "(prompts, suggestions and accepted code). On the Policies page, tick “Telemetry enabled” "
            "and “Telemetry content” first; completions accepted from then on can be used."
        )


@dataclass(frozen=True)
class AcceptedProvider:
    """The serving side's answer: its policy, and the accepted completions newer than a time, each a
    dict with id, created_at (ISO 8601), prefix, middle, suffix, snapshot ("" when none), filepath,
    language, outcome and user (an opaque key, only counted)."""

    policy: Callable[[], FeedbackPolicy]
    collect: Callable[[datetime], list[dict]]


_provider: AcceptedProvider | None = None


def accepted_provider_register(provider: AcceptedProvider) -> None:
    """Called once by the app that stores completions (inference) when it starts."""
    global _provider
    _provider = provider


def accepted_provider() -> AcceptedProvider:
    if _provider is None:
        raise DatasetError(
            "Accepted completions cannot be included: no provider of accepted completions is registered "
            "(the serving app, inference, is not installed in this process)."
        )
    return _provider


def accepted_refusal() -> str:
    """Why the option cannot be used now (no provider, or content not collected), or ""."""
    try:
        return accepted_provider().policy().refusal
    except DatasetError as exc:
        return str(exc)


def accepted_policy_check() -> FeedbackPolicy:
    """The policy in force; raises DatasetError with the reason when accepted completions cannot be used."""
    policy = accepted_provider().policy()
    if policy.refusal:
        raise DatasetError(policy.refusal)
    return policy


@dataclass(frozen=True)
class AcceptedFeed:
    """What the dataset stage read from the provider."""

    records: list[dict]
    since: datetime
    policy_globs: tuple[str, ...]


def accepted_feed(*, now: datetime | None = None) -> AcceptedFeed:
    """The accepted completions of the retention window, under the policy in force (refused as
    `accepted_policy_check` refuses)."""
    policy = accepted_policy_check()
    since = (now or datetime.now(UTC)) - timedelta(days=policy.retention_days)
    return AcceptedFeed(accepted_provider().collect(since), since, tuple(policy.exclude_globs))


def accepted_used(summary: dict) -> str:
    """ "used 12 accepted completions from 3 developers" for a run's summary, or "" when none were."""
    n, m = summary.get("accepted_completions") or 0, summary.get("accepted_developers") or 0
    if not n:
        return ""
    return f"used {n} accepted completion{'s' * (n != 1)} from {m} developer{'s' * (m != 1)}"


# --- held-out files -------------------------------------------------------------------------------


def _squeeze(line: str) -> str:
    return _SPACE.sub("", line)


def _lines(text: str) -> list[str]:
    """Non-blank lines, spaces removed: how code is compared with held-out files."""
    return [s for s in (_squeeze(line) for line in text.splitlines()) if s]


class HeldOut:
    """The held-out files, for recognising their code: their paths, and every run of one to
    CONTEXT_LINES consecutive non-blank lines (spaces ignored)."""

    def __init__(self, files: Iterable[dict]) -> None:
        self.paths: set[str] = set()
        self.runs: set[int] = set()
        for f in files:
            self.paths.add(f["path"].casefold().strip("/"))
            lines = _lines(f["text"])
            for size in range(1, CONTEXT_LINES + 1):
                self.runs.update(hash(tuple(lines[i : i + size])) for i in range(len(lines) - size + 1))

    def path_held(self, filepath: str) -> bool:
        """Whether `filepath` (as an IDE names it) ends with a held-out file's repository path."""
        clean = path_normalize(filepath).casefold().strip("/")
        names = clean.split("/")
        return any("/".join(names[i:]) in self.paths for i in range(len(names)))

    def contains(self, lines: list[str]) -> bool:
        """Whether `lines` (spaces ignored, blank ones skipped) are held-out lines in this order."""
        squeezed = [s for s in map(_squeeze, lines) if s]
        if not squeezed:
            return False
        size = min(len(squeezed), CONTEXT_LINES)
        return all(hash(tuple(squeezed[i : i + size])) in self.runs for i in range(len(squeezed) - size + 1))


# --- from records to samples ----------------------------------------------------------------------


def _tail(text: str, n: int) -> str:
    """The last `n` lines of `text`, the unfinished last one included."""
    cut = len(text)
    for _ in range(n):
        cut = text.rfind("\n", 0, cut)
        if cut == -1:
            return text
    return text[cut + 1 :]


def _head(text: str, n: int) -> str:
    """The first `n` lines of `text` (without the newline that ends the last)."""
    cut = -1
    for _ in range(n):
        cut = text.find("\n", cut + 1)
        if cut == -1:
            return text
    return text[:cut]


def _around(prefix: str, suffix: str) -> tuple[list[str], list[str]]:
    """The CONTEXT_LINES non-blank whole lines above the cursor's line, and those below it."""
    above = [ln for ln in prefix[: prefix.rfind("\n") + 1].splitlines() if ln.strip()]
    below = (
        [ln for ln in suffix[suffix.find("\n") + 1 :].splitlines() if ln.strip()] if "\n" in suffix else []
    )
    return above[-CONTEXT_LINES:], below[:CONTEXT_LINES]


def _heldout_reason(sample: dict, accepted: str, heldout: HeldOut) -> str:
    """Why a sample is a held-out file's code ("held-out file" or "held-out text"), or "": its path
    ends with a held-out file's; the lines it fills in (the accepted text or what survived, with the
    rest of the cursor's line) are held-out lines; or the lines above or below the cursor are."""
    if sample["path"] and heldout.path_held(sample["path"]):
        return "held-out file"
    prefix, suffix = sample["prefix"], sample["suffix"]
    for middle in dict.fromkeys((accepted, sample["middle"])):
        filled = (_tail(prefix, 1) + middle + _head(suffix, 1)).splitlines()
        if len(_squeeze(middle)) >= MIN_CHECK_CHARS and heldout.contains(filled):
            return "held-out text"
    for lines in _around(prefix, suffix):
        if len(_squeeze("".join(lines))) >= MIN_CHECK_CHARS and heldout.contains(lines):
            return "held-out text"
    return ""


def _survivor(prefix: str, middle: str, suffix: str, snapshot: str) -> str | None:
    """The text that stands where `middle` was accepted, in `snapshot`: between the prefix's last
    lines (found once) and the suffix's first ones (or as many lines as were accepted, without a
    suffix). None when the snapshot cannot be lined up with the completion."""
    before = _tail(prefix, CONTEXT_LINES)
    if len(before.strip()) < 10 or snapshot.count(before) != 1:
        return None
    start = snapshot.find(before) + len(before)
    after = _head(suffix, CONTEXT_LINES)
    if after.strip():
        end = snapshot.find(after, start)
    else:  # nothing after the cursor to line up with: as many lines as were accepted
        end = start - 1
        for _ in range(len(middle.splitlines()) or 1):
            end = snapshot.find("\n", end + 1)
            if end == -1:
                end = len(snapshot)
                break
    if end == -1 or end - start > MAX_SURVIVOR_CHARS:
        return None
    return snapshot[start:end]


@dataclass
class AcceptedResult:
    """The samples kept, and what became of the others."""

    since: datetime
    read: int = 0
    samples: list[dict] = field(default_factory=list)
    left_out: Counter = field(default_factory=Counter)
    by_language: Counter = field(default_factory=Counter)
    users: set[str] = field(default_factory=set)
    duplicates: int = 0
    snapshots: Counter = field(default_factory=Counter)  # used, edited, not_located
    secrets: Counter = field(default_factory=Counter)

    def report(self) -> dict:
        """What the dataset's report records: counts only, never a developer's name or a text."""
        return {
            "since": self.since.isoformat(timespec="seconds"),
            "read": self.read,
            "kept": len(self.samples),
            "developers": len(self.users),
            "by_language": dict(sorted(self.by_language.items())),
            "left_out": dict(self.left_out.most_common()),
            "duplicates": self.duplicates,
            "snapshots": {k: self.snapshots[k] for k in ("used", "edited", "not_located")},
            "secrets": dict(self.secrets.most_common()),
        }


class _Preparer:
    def __init__(self, *, heldout, exclude_globs, policy_globs, languages, since, scrubber, secrets) -> None:
        import pathspec

        globs = [g for g in exclude_globs if g.strip() and not g.lstrip().startswith("#")]
        self.excluded = pathspec.GitIgnoreSpec.from_lines(globs) if globs else None
        self.heldout, self.policy_globs, self.languages = heldout, tuple(policy_globs), frozenset(languages)
        self.since, self.scrubber, self.secrets = since, scrubber, secrets
        self.seen: set[tuple[str, str]] = set()

    def reason(self, r: dict) -> str:
        """Why a record is not used before its text is looked at, or ""."""
        if datetime.fromisoformat(r["created_at"]) < self.since:
            return "older than the retention"
        if r.get("outcome", "ok") not in SERVED_OUTCOMES:
            return "not served"
        if not r["middle"].strip():
            return "empty"
        if self._path_excluded(r.get("filepath") or ""):
            return "excluded"
        if self.languages and r.get("language") not in self.languages:
            return "language off"
        return ""

    def _path_excluded(self, filepath: str) -> bool:
        if not filepath:
            return False
        if path_excluded(filepath, self.policy_globs):
            return True
        names = path_normalize(filepath).strip("/").split("/")
        return self.excluded is not None and any(
            self.excluded.match_file("/".join(names[i:])) for i in range(len(names))
        )

    def scrub(self, text: str, path: str) -> str:
        if not text:
            return text
        clean, hits = self.scrubber.scrub(text, path or "completion")
        self.secrets.update(h.kind for h in hits)
        return clean

    def sample(self, r: dict) -> tuple[dict | None, str, str]:
        """The scrubbed sample of an eligible record, or None with the reason; and how a snapshot
        decided its middle ("", "kept", "edited", "not_located")."""
        path = r.get("filepath") or ""
        prefix, accepted, suffix = (self.scrub(r[k], path) for k in ("prefix", "middle", "suffix"))
        middle, source, how = accepted, "accepted", ""
        if r.get("snapshot"):
            survivor = _survivor(prefix, accepted, suffix, self.scrub(r["snapshot"], path))
            if survivor is not None and not survivor.strip():
                return None, "deleted later", ""
            if survivor is None:
                how = "not_located"
            else:
                middle, source, how = survivor, "snapshot", "kept" if survivor == accepted else "edited"
        cursor_line = _tail(prefix, 1) + middle + _head(suffix, 1)
        if self.scrubber.scrub(cursor_line, path or "completion")[1]:
            return None, "secret at the cursor", how
        sample = {
            "path": path,
            "language": r.get("language") or "unknown",
            "prefix": prefix,
            "middle": middle,
            "suffix": suffix,
            "source": source,
        }
        reason = _heldout_reason(sample, accepted, self.heldout)
        return (None, reason, how) if reason else (sample, "", how)


def accepted_prepare(
    records: Iterable[dict],
    *,
    heldout: HeldOut,
    exclude_globs: Iterable[str],
    policy_globs: Iterable[str],
    languages: Iterable[str],
    since: datetime,
    scrubber,
) -> AcceptedResult:
    """Filter, scrub, line up with snapshots, check against the held-out files and deduplicate
    `records` (the provider's dicts, oldest first) into training samples (see the module's rules)."""
    result = AcceptedResult(since=since)
    prep = _Preparer(
        heldout=heldout,
        exclude_globs=exclude_globs,
        policy_globs=policy_globs,
        languages=languages,
        since=since,
        scrubber=scrubber,
        secrets=result.secrets,
    )
    for r in records:
        result.read += 1
        reason = prep.reason(r)
        sample, how = None, ""
        if not reason:
            sample, reason, how = prep.sample(r)
        if how == "not_located":
            result.snapshots["not_located"] += 1
        if sample is None:
            result.left_out[reason] += 1
            continue
        if r.get("user"):  # a merged duplicate's developer counts too
            result.users.add(r["user"])
        key = (_tail(sample["prefix"], DEDUP_LINES), sample["middle"])
        if key in prep.seen:
            result.duplicates += 1
            continue
        prep.seen.add(key)
        if how in ("kept", "edited"):
            result.snapshots["used"] += 1
            result.snapshots["edited"] += how == "edited"
        result.samples.append(sample)
        result.by_language[sample["language"]] += 1
    return result


def accepted_write(out_dir: Path, result: AcceptedResult) -> Path:
    """accepted.jsonl in the dataset folder: one sample a line (path, language, prefix, middle,
    suffix, source), for training only."""
    target = out_dir / ACCEPTED_FILE
    with target.open("w") as f:
        for sample in result.samples:
            f.write(json.dumps(sample, ensure_ascii=False) + "\n")
    return target


def accepted_built_line(report: dict) -> str:
    """The dataset log's line about them, from the report's `accepted` entry."""
    n, m = report["kept"], report["developers"]
    left = ", ".join(f"{k}: {v}" for k, v in report["left_out"].items()) or "none"
    return (
        f"{n} accepted completion{'s' * (n != 1)} from {m} developer{'s' * (m != 1)} (training only) of "
        f"{report['read']} read since {report['since'][:10]}; {report['duplicates']} duplicates merged; "
        f"left out: {left}"
    )
