"""Register and sync repositories as bare mirrors under the instance dir, and keep them fresh on a
django-q2 schedule.

The schedule is made by `mirror_schedule_ensure()`, which is idempotent and called whenever a
repository is registered and by `mirror_sync` (not at import or app start-up: that must not touch
the database). HEARTH_MIRROR_SYNC_MINUTES sets the interval; 0 removes the schedule.
"""

from __future__ import annotations

import logging
import re
import shutil
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from appliance import paths
from appliance.errors import MirrorError
from appliance.stages import Stage, stage_run
from trainer.mirrors.credentials import (
    GitAuth,
    credential_decrypt,
    credential_encrypt,
    url_split_credentials,
)
from trainer.mirrors.git import git, remote_head_branch
from trainer.models import Repository

logger = logging.getLogger(__name__)

URL_SCHEMES = ("https://", "ssh://", "git://", "file://")
SCHEDULE_NAME = "hearth-mirror-sync"
SCHEDULE_FUNC = "trainer.mirrors.tasks.mirrors_sync_scheduled"


def _name_from_source(source: str) -> str:
    stem = re.sub(r"\.git$", "", source.rstrip("/").rsplit("/", 1)[-1]) or "repo"
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", stem).strip("-").lower()[:100] or "repo"


def repository_source_parse(source: str) -> tuple[str, str, str]:
    """(source without credentials, username, password found in the URL)."""
    from django.conf import settings

    if source.startswith("http://"):
        raise MirrorError("Plain http:// would send credentials and code unencrypted: use https://.")
    if source.startswith("git://") and not settings.HEARTH_GIT_ALLOW_INSECURE:
        raise MirrorError(
            "git:// sends code unencrypted and unauthenticated: use https:// or ssh://, or let an "
            "admin allow it with HEARTH_GIT_ALLOW_INSECURE=1."
        )
    if source.startswith(URL_SCHEMES):
        return url_split_credentials(source)
    transport = re.match(r"([a-zA-Z][\w+.-]*)(://|::)", source)
    if transport:  # ext::, fd::, ftp://, … : only the four schemes above are allowed
        raise MirrorError(
            f"Unsupported URL scheme {transport.group(0)}: use https://, ssh:// or file:// (git:// if allowed)."
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise MirrorError(f"{source} does not exist: give the path of a git repository or an intranet URL.")
    path = path.resolve()
    try:
        git("rev-parse", "--git-dir", cwd=path)
    except MirrorError as exc:
        raise MirrorError(f"{path} is not a git repository (git could not open it).") from exc
    return str(path), "", ""


def repository_create(
    *,
    source: str,
    name: str = "",
    branch: str = "",
    username: str = "",
    credential: str = "",
    exclude_globs: str = "",
) -> Repository:
    """Validate the source and create the row (credential encrypted); no network yet."""
    source, url_user, url_password = repository_source_parse(source)
    name = name or _name_from_source(source)
    if not re.fullmatch(r"[-a-zA-Z0-9_]+", name):
        raise MirrorError(f"{name!r} is not a valid name: use letters, digits, '-' and '_'.")
    if Repository.objects.filter(name=name).exists():
        raise MirrorError(f"A repository named {name!r} is already registered.")
    repo = Repository.objects.create(
        name=name,
        source=source,
        branch=branch,
        username=username or url_user,
        credential=credential_encrypt(credential or url_password),
        exclude_globs=exclude_globs,
        mirror_path=str(paths.mirror_path(name)),
    )
    mirror_schedule_ensure()
    return repo


def repository_register(
    *,
    source: str,
    name: str = "",
    branch: str = "",
    username: str = "",
    credential: str = "",
    exclude_globs: str = "",
) -> Repository:
    """Create the row and its bare mirror, then sync it once."""
    repo = repository_create(
        source=source,
        name=name,
        branch=branch,
        username=username,
        credential=credential,
        exclude_globs=exclude_globs,
    )
    repository_sync(repo=repo)
    return repo


def repository_credential_set(
    *, repo: Repository, username: str | None = None, credential: str
) -> Repository:
    repo.credential = credential_encrypt(credential)
    fields = ["credential", "updated_at"]
    if username is not None:
        repo.username = username
        fields.append("username")
    repo.save(update_fields=fields)
    repo.log_line("credential changed")
    return repo


def repository_auth(repo: Repository) -> GitAuth | None:
    secret = credential_decrypt(repo.credential)
    return GitAuth(username=repo.username, secret=secret) if secret else None


def repository_sync(*, repo: Repository) -> Repository:
    """Fetch the mirror (cloning it the first time) and record the branch read and its SHA. The
    default branch is asked of the remote at every sync unless the row overrides it. Raises
    StageTaken (an InvalidTransition) when the repository is already syncing."""
    stage_run(
        repo,
        _repository_fetch,
        stage="mirror sync",
        claim_to=Repository.Status.SYNCING,
        done_to=Repository.Status.READY,
    )
    return repo


def _repository_fetch(stage: Stage) -> None:
    repo: Repository = stage.row
    mirror = Path(repo.mirror_path)
    auth = repository_auth(repo)
    if not (mirror / "HEAD").exists():
        tmp = mirror.with_suffix(".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        # --no-local: even a path is fetched through the transport, so fsck checks every object
        # and a hostile objects/ directory (symlinks, alternates) is never copied as is.
        git("clone", "--mirror", "--no-local", "--no-hardlinks", "--", repo.source, str(tmp), auth=auth)
        tmp.rename(mirror)
    else:
        git("remote", "set-url", "origin", repo.source, cwd=mirror)
        git("remote", "update", "--prune", cwd=mirror, auth=auth)
        detected = remote_head_branch(mirror, auth)
        if detected:
            git("symbolic-ref", "HEAD", f"refs/heads/{detected}", cwd=mirror)
    branch = repo.branch or _default_branch(mirror)
    try:
        sha = git("rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}", cwd=mirror).decode().strip()
    except MirrorError as exc:
        raise MirrorError(f"The repository has no branch {branch!r}.") from exc
    repo.default_branch, repo.head_sha, repo.last_synced_at = branch, sha, timezone.now()
    repo.save(update_fields=["default_branch", "head_sha", "last_synced_at", "updated_at"])
    stage.log(f"synced {branch} at {sha}")
    logger.info("mirror %s synced: %s@%s", repo.name, branch, sha[:12])


def repositories_sync_all() -> tuple[list[Repository], list[tuple[Repository, str]]]:
    """Sync every repository not already syncing; one failure does not stop the others."""
    synced, failed = [], []
    for repo in Repository.objects.exclude(status=Repository.Status.SYNCING):
        try:
            synced.append(repository_sync(repo=repo))
        except MirrorError as exc:
            failed.append((repo, str(exc)))
    return synced, failed


def mirror_schedule_ensure() -> str:
    """Create, update or remove the django-q2 schedule that syncs every mirror. Idempotent."""
    from django_q.models import Schedule

    minutes = settings.HEARTH_MIRROR_SYNC_MINUTES
    if minutes <= 0:
        Schedule.objects.filter(name=SCHEDULE_NAME).delete()
        return "off"
    # The first scheduled run comes one interval from now: registering a repository syncs it already.
    schedule, created = Schedule.objects.get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": SCHEDULE_FUNC,
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
            "next_run": timezone.now() + timedelta(minutes=minutes),
        },
    )
    if not created and (schedule.minutes, schedule.func, schedule.schedule_type) != (
        minutes,
        SCHEDULE_FUNC,
        Schedule.MINUTES,
    ):
        schedule.minutes, schedule.func, schedule.schedule_type, schedule.repeats = (
            minutes,
            SCHEDULE_FUNC,
            Schedule.MINUTES,
            -1,
        )
        schedule.next_run = timezone.now() + timedelta(minutes=minutes)
        schedule.save()
    return f"every {minutes} min"


def _default_branch(mirror: Path) -> str:
    """The branch the source's HEAD names; with a detached HEAD, its only branch, else a clear error."""
    try:
        ref = git("symbolic-ref", "--quiet", "HEAD", cwd=mirror).decode().strip()
    except MirrorError:
        listed = git("for-each-ref", "--format=%(refname:short)", "refs/heads/", cwd=mirror).decode().split()
        if len(listed) == 1:
            return listed[0]
        raise MirrorError(
            "The repository's HEAD is detached (it names no branch) and it has "
            + (
                f"{len(listed)} branches ({', '.join(listed[:5])}{'…' if len(listed) > 5 else ''})"
                if listed
                else "no branch"
            )
            + ": set the repository's branch, or check a branch out in the source."
        ) from None
    branch = ref.removeprefix("refs/heads/")
    if not git("for-each-ref", f"refs/heads/{branch}", cwd=mirror).strip():
        raise MirrorError(f"The repository has no commits on its default branch {branch!r}.")
    return branch
