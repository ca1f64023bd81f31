"""django-q2 entry points for mirrors: plain functions taking primary keys."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def repository_sync_task(repo_pk: int) -> str:
    from appliance.errors import MirrorError
    from trainer.mirrors.services import repository_sync
    from trainer.models import Repository

    repo = Repository.objects.get(pk=repo_pk)
    try:
        return repository_sync(repo=repo).head_sha
    except MirrorError as exc:  # already recorded on the row
        return f"failed: {exc}"


def mirrors_sync_scheduled() -> str:
    """The scheduled sync of every mirror (see mirror_schedule_ensure)."""
    from trainer.mirrors.services import repositories_sync_all

    synced, failed = repositories_sync_all()
    for repo, reason in failed:
        logger.warning("scheduled sync of %s failed: %s", repo.name, reason)
    return f"{len(synced)} synced, {len(failed)} failed"
