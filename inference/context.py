"""Repository context at serving time: snippets of the served version's dataset, joined to what the
client sent, when the policy allows it and evaluation measured the version better with them.

Retrieval asks the dataset's code index with the lines above the cursor's line, so the snippets (and
the front of the prompt) stay the same while a line is typed and each keystroke still extends the
cached prompt. Nothing here may fail a completion: without a usable index the request goes as sent.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from appliance.fields import path_excluded, path_normalize
from inference.engine.request import MAX_CONTEXT_ITEMS, MAX_PROMPT_CHARS, prompt_chars

logger = logging.getLogger(__name__)

# What one request may add: a few definition-sized chunks. The prompt builder still fits them into
# its token budget (CONTEXT_SHARE of the prompt), dropping the farthest first.
RETRIEVED_K = 4
RETRIEVED_BUDGET_CHARS = 2400

Snippet = tuple[str, str]  # (path, text)


@dataclass(frozen=True)
class ServedContext:
    """What serving needs to know about the served version (cached with the serving rules)."""

    version_pk: int | None = None
    serves_context: bool = False
    dataset_pk: int | None = None
    repositories: tuple[tuple[str, str], ...] = ()  # (name, source) of the dataset's repositories


NO_CONTEXT = ServedContext()


def served_context_lookup() -> ServedContext:
    """The served version and, when it serves with context, its dataset (None version: the base)."""
    from trainer.versions import served_version

    return version_context(served_version())


def version_context(version) -> ServedContext:
    """What serving needs to know of `version` (None: the base): its dataset when it serves with context."""
    from trainer.models import Repository, TrainingRun

    if version is None:
        return NO_CONTEXT
    if not version.serves_context:
        return ServedContext(version.pk, False, None)
    dataset_pk = TrainingRun.objects.filter(pk=version.run_id).values_list("dataset_id", flat=True).first()
    repos = tuple(
        Repository.objects.filter(datasets=dataset_pk).order_by("name").values_list("name", "source")
    )
    return ServedContext(version.pk, True, dataset_pk, repos)


def _stem(location: str) -> str:
    """'https://git.example/team/Pay-Service.git' or '/srv/mirrors/pay-service/' → 'pay-service'."""
    last = location.strip().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return last.removesuffix(".git").lower()


def request_repository(served: ServedContext, *, git_url: str = "", filepath: str = "") -> str:
    """The one repository of the served dataset a request is in, or "" (retrieve from all of them).

    Known from the client's git URL (Tabby sends it) or, failing that, from a folder of the file's
    path named like a repository (an IDE sends the path inside the developer's checkout)."""
    if len(served.repositories) < 2:
        return ""
    if git_url:
        stem = _stem(git_url)
        found = {n for n, src in served.repositories if stem and stem in (n.lower(), _stem(src))}
        if len(found) == 1:
            return found.pop()
    if filepath:
        folders = {part.lower() for part in path_normalize(filepath).split("/")[:-1]}
        found = {n for n, src in served.repositories if folders & {n.lower(), _stem(src)}}
        if len(found) == 1:
            return found.pop()
    return ""


_warned: set[tuple[int, str]] = set()


def _warn_once(dataset_pk: int, problem: str, detail: object = "") -> None:
    if (dataset_pk, problem) in _warned:
        return
    _warned.add((dataset_pk, problem))
    logger.warning(
        "code index of dataset %s %s%s; completions are served without repository context",
        dataset_pk,
        problem,
        f" ({detail})" if detail else "",
    )


def same_file(indexed: str, filepath: str) -> bool:
    """True when the index's (repository-relative) path names the file an IDE sent, which may be
    relative, absolute, a Windows path or a file:// URI."""
    if not filepath:
        return False
    clean = path_normalize(filepath)
    return clean == indexed or clean.endswith("/" + indexed)


def context_retrieve(
    served: ServedContext,
    *,
    prefix: str,
    filepath: str,
    language: str,
    globs: list[str],
    repository: str = "",
) -> list[Snippet]:
    """Snippets of the served version's dataset for a cursor at the end of `prefix`, best one last:
    never from the current file, never from a path the content-exclusion globs match. [] when the
    dataset has no usable index (warned once)."""
    from trainer.context.index import context_snippets
    from trainer.context.services import context_index_open

    if not served.serves_context or served.dataset_pk is None:
        return []
    try:
        index = context_index_open(served.dataset_pk)
        if index is None:
            _warn_once(served.dataset_pk, "is missing")
            return []
        return context_snippets(
            index,
            prefix,
            filepath=filepath,
            language="" if language == "unknown" else language,
            budget_chars=RETRIEVED_BUDGET_CHARS,
            k=RETRIEVED_K,
            keep=lambda p: not path_excluded(p, globs) and not same_file(p, filepath),
            repo=repository,
        )
    except (sqlite3.Error, OSError, ValueError) as exc:
        _warn_once(served.dataset_pk, "cannot be read", exc)
        return []


def context_merge(
    client: list[Snippet], retrieved: list[Snippet], *, prefix: str, suffix: str | None
) -> list[Snippet]:
    """The client's snippets last (nearest the cursor: the prompt builder drops the first ones when
    short), retrieved ones before them, best retrieved ones kept first. A retrieved chunk the client
    already sent (same path, text within the client's) is left out, and nothing is added beyond the
    request's limits: added context never makes a valid request fail."""
    room_items = MAX_CONTEXT_ITEMS - len(client)
    room_chars = MAX_PROMPT_CHARS - prompt_chars(prefix, suffix, client)
    added: list[Snippet] = []
    for path, text in reversed(retrieved):
        if len(added) >= room_items:
            break
        size = len(path) + len(text)
        if size > room_chars or (path, text) in added or any(path == p and text in t for p, t in client):
            continue
        added.append((path, text))
        room_chars -= size
    return added[::-1] + client
