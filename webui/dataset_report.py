"""A dataset's build report as its admin page shows it: the report's JSON (trainer.datasets writes it)
read once into named figures here, so that the template `admin/hearth/_dataset_report.html` names
what it shows instead of knowing the report's keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from trainer.datasets.split import HASH_REASONS
from webui.admin_display import digest_short

# How many secret hits and held-out files the page lists; the dataset's files list has them all.
HITS_SHOWN = 200
HELDOUT_SHOWN = 500


class Split(NamedTuple):
    label: str
    files: int
    bytes: int


class LeftOut(NamedTuple):
    reason: str
    files: int
    bytes: int


class Language(NamedTuple):
    name: str
    files: int
    bytes: int
    tokens: int


class RepositoryFigures(NamedTuple):
    name: str
    commit: SafeString | str
    files_read: int
    files_kept: int
    bytes_kept: int
    tokens: int


class SecretHit(NamedTuple):
    repository: str
    path: str
    line: int
    kind: str


class HeldOutFile(NamedTuple):
    repository: str
    path: str


@dataclass(frozen=True)
class Duplicates:
    exact: int
    near: int
    near_threshold: float
    near_mode: str
    files_checked: int
    share: str  # "3.2%", of the files checked


@dataclass(frozen=True)
class AcceptedFigures:
    """What a dataset took of the completions developers accepted (training only)."""

    since: str  # the day the retention window began
    read: int
    kept: int
    developers: int  # a count: the report never names one
    duplicates: int
    languages: list[tuple[str, int]]
    left_out: list[tuple[str, int]]
    from_snapshots: int  # trained on the code that survived, as a later snapshot showed it
    edited: int  # of those, changed by the developer after accepting
    secrets: int


def accepted_figures(report: dict) -> AcceptedFigures | None:
    """The accepted completions' figures of a report; None when the dataset was built without them."""
    a = report.get("accepted") or {}
    if not a:
        return None
    snapshots = a.get("snapshots") or {}
    return AcceptedFigures(
        since=a["since"][:10],
        read=a["read"],
        kept=a["kept"],
        developers=a["developers"],
        duplicates=a["duplicates"],
        languages=sorted(a["by_language"].items(), key=lambda kv: -kv[1]),
        left_out=list(a["left_out"].items()),
        from_snapshots=snapshots.get("used", 0),
        edited=snapshots.get("edited", 0),
        secrets=sum(a.get("secrets", {}).values()),
    )


@dataclass(frozen=True)
class DatasetReport:
    splits: list[Split]
    tokens_train: int
    tokens_heldout: int
    tokens_method: str
    duplicates: Duplicates
    left_out: list[LeftOut]
    languages: list[Language]
    repositories: list[RepositoryFigures]
    secrets_total: int
    secrets_files: int
    secret_kinds: list[tuple[str, int]]
    secret_hits: list[SecretHit]
    heldout_count: int
    heldout_files: list[HeldOutFile]
    split_rule: str  # one sentence: which files were held out and why; "" for reports before it was recorded
    accepted: AcceptedFigures | None = None  # None: built without accepted completions


def _split_rule(report: dict) -> str:
    """The held-out rule in a plain sentence, from the report's `split` entry."""
    split = report.get("split") or {}
    by_repo, percent = split.get("by_repo") or {}, split.get("percent", 0)
    if not by_repo:
        return ""
    recent = {k: v.get("heldout_since") for k, v in by_repo.items() if v["method"] == "recent"}
    hashed = {
        k: HASH_REASONS.get(v.get("reason", ""), "") for k, v in by_repo.items() if v["method"] == "hash"
    }
    if not hashed:
        since = (
            f"since {next(iter(recent.values()))}"
            if len(recent) == 1
            else "; ".join(f"{k} since {d}" for k, d in recent.items())
        )
        return (
            f"Held out: the {percent}% of files changed most recently ({since}), "
            "so evaluation looks like tomorrow's code."
        )
    why = (
        "; ".join(f"{k}: {r}" for k, r in hashed.items()) if len(by_repo) > 1 else next(iter(hashed.values()))
    )
    if not recent:
        return f"Held out: a fixed {percent}% of files chosen by hash ({why})."
    return (
        f"Held out: {percent}% of files per repository, those changed most recently where the history "
        f"tells them apart ({'; '.join(f'{k} since {d}' for k, d in recent.items())}), "
        f"a fixed share chosen by hash elsewhere ({why})."
    )


def _figures(report: dict) -> tuple[list[Split], list[LeftOut], list[Language], list[RepositoryFigures]]:
    r = report
    splits = [
        Split("read", r["seen_files"], r["seen_bytes"]),
        Split("kept", r["kept_files"], r["kept_bytes"]),
        Split("training", r["train_files"], r["train_bytes"]),
        Split("held out", r["heldout_files"], r["heldout_bytes"]),
    ]
    left_out = [LeftOut(k, v, r["skipped_bytes"].get(k, 0)) for k, v in r["skipped"].items()]
    languages = [
        Language(k, v["files"], v["bytes"], v["tokens"])
        for k, v in sorted(r["by_language"].items(), key=lambda kv: -kv[1]["files"])
    ]
    repositories = [
        RepositoryFigures(
            name=k,
            commit=digest_short(r["commits"].get(k, "")),
            files_read=v.get("seen_files", 0),
            files_kept=v.get("kept_files", 0),
            bytes_kept=v.get("kept_bytes", 0),
            tokens=v.get("tokens", 0),
        )
        for k, v in r["by_repo"].items()
    ]
    return splits, left_out, languages, repositories


def dataset_report_read(report: dict) -> DatasetReport | None:
    """The figures of a finished build's `report`; None while there is none (a build in progress
    has only its first counts)."""
    if not report or "tokens" not in report:
        return None
    d, s, t = report["duplicates"], report["secrets"], report["tokens"]
    splits, left_out, languages, repositories = _figures(report)
    return DatasetReport(
        splits=splits,
        tokens_train=t["train"],
        tokens_heldout=t["heldout"],
        tokens_method=t["method"],
        duplicates=Duplicates(
            exact=d["exact"],
            near=d["near"],
            near_threshold=d["near_threshold"],
            near_mode=d["near_mode"],
            files_checked=d["checked_files"],
            share=f"{d['ratio']:.1%}",
        ),
        left_out=left_out,
        languages=languages,
        repositories=repositories,
        secrets_total=s["total"],
        secrets_files=s["files"],
        secret_kinds=list(s["by_kind"].items()) or [("none", 0)],
        secret_hits=[SecretHit(h["repo"], h["path"], h["line"], h["kind"]) for h in s["hits"][:HITS_SHOWN]],
        heldout_count=report["heldout_files"],
        heldout_files=[HeldOutFile(h["repo"], h["path"]) for h in report["heldout"][:HELDOUT_SHOWN]],
        split_rule=_split_rule(report),
        accepted=accepted_figures(report),
    )


def dataset_report_html(report: dict) -> SafeString | str:
    """The report block of a dataset's page: what was read, kept and left out (and why), languages,
    repositories, duplicates, secrets scrubbed and the held-out files."""
    figures = dataset_report_read(report)
    if figures is None:
        return "No report yet."
    return render_to_string("admin/hearth/_dataset_report.html", {"report": figures})
