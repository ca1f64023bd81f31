"""Register and sync repositories as bare mirrors under the instance dir."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from django.utils import timezone

from appliance import paths
from appliance.errors import MirrorError
from trainer.mirrors.git import git
from trainer.models import Repository

logger = logging.getLogger(__name__)

URL_SCHEMES = ("https://", "ssh://", "git://", "file://")


def _name_from_source(source: str) -> str:
    stem = re.sub(r"\.git$", "", source.rstrip("/").rsplit("/", 1)[-1]) or "repo"
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", stem).strip("-").lower()[:100] or "repo"


def _source_normalise(source: str) -> str:
    if source.startswith(URL_SCHEMES):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise MirrorError(f"{source} does not exist: give the path of a git repository or an intranet URL.")
    path = path.resolve()
    try:
        git("rev-parse", "--git-dir", cwd=path)
    except MirrorError as exc:
        raise MirrorError(f"{path} is not a git repository (git could not open it).") from exc
    return str(path)


def repository_register(*, source: str, name: str = "", branch: str = "") -> Repository:
    """Create the row and its bare mirror, then sync it once."""
    source = _source_normalise(source)
    name = name or _name_from_source(source)
    if Repository.objects.filter(name=name).exists():
        raise MirrorError(f"A repository named {name!r} is already registered.")
    repo = Repository.objects.create(name=name, source=source, default_branch=branch,
                                     mirror_path=str(paths.mirror_path(name)))
    repository_sync(repo=repo)
    return repo


def repository_sync(*, repo: Repository) -> Repository:
    """Fetch the mirror (cloning it the first time) and record the default branch and its SHA."""
    repo.transition(Repository.Status.SYNCING)
    mirror = Path(repo.mirror_path)
    try:
        if not (mirror / "HEAD").exists():
            tmp = mirror.with_suffix(".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            git("clone", "--mirror", "--no-hardlinks", "--", repo.source, str(tmp))
            tmp.rename(mirror)
        else:
            git("remote", "update", "--prune", cwd=mirror)
        branch = repo.default_branch or _default_branch(mirror)
        sha = git("rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}", cwd=mirror).decode().strip()
    except MirrorError as exc:
        repo.transition(Repository.Status.FAILED, reason=str(exc))
        repo.log_line(f"sync failed: {exc}")
        raise
    repo.default_branch, repo.head_sha, repo.last_synced_at = branch, sha, timezone.now()
    repo.save(update_fields=["default_branch", "head_sha", "last_synced_at", "updated_at"])
    repo.transition(Repository.Status.READY)
    repo.log_line(f"synced {branch} at {sha}")
    logger.info("mirror %s synced: %s@%s", repo.name, branch, sha[:12])
    return repo


def _default_branch(mirror: Path) -> str:
    ref = git("symbolic-ref", "--quiet", "HEAD", cwd=mirror).decode().strip()
    branch = ref.removeprefix("refs/heads/")
    if not git("for-each-ref", f"refs/heads/{branch}", cwd=mirror).strip():
        raise MirrorError(f"The repository has no commits on its default branch {branch!r}.")
    return branch
