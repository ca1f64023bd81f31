"""Mirrors: registration by path, errors a person can read, and hostile repositories stay inert."""

from __future__ import annotations

import pytest

from appliance.errors import MirrorError
from tests.conftest import git_repo_make, git_run


@pytest.mark.django_db
def test_register_by_path_records_branch_and_sha(code_repo):
    from trainer.mirrors.services import repository_register

    repo = repository_register(source=str(code_repo))
    assert repo.status == "ready"
    assert repo.default_branch == "main"
    assert repo.head_sha == git_run(code_repo, "rev-parse", "HEAD").strip()


@pytest.mark.django_db
def test_not_a_git_repository_is_refused_clearly(tmp_path):
    from trainer.mirrors.services import repository_register

    (tmp_path / "plain").mkdir()
    with pytest.raises(MirrorError, match="is not a git repository"):
        repository_register(source=str(tmp_path / "plain"))
    with pytest.raises(MirrorError, match="does not exist"):
        repository_register(source=str(tmp_path / "missing"))


@pytest.mark.django_db
def test_mirror_add_command_reports_error_without_traceback(tmp_path):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="not a git repository"):
        call_command("mirror_add", str(tmp_path))


@pytest.mark.django_db
def test_hooks_and_fsmonitor_never_run(tmp_path):
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register, repository_sync

    marker = tmp_path / "pwned"
    repo = git_repo_make(tmp_path / "hostile", {"a.py": "x = 1\n" * 5, "b.py": "def f():\n    return 2\n"})
    hook = f"#!/bin/sh\ntouch {marker}\n"
    for name in ("post-checkout", "pre-commit", "post-merge", "reference-transaction", "pre-auto-gc"):
        (repo / ".git" / "hooks" / name).write_text(hook)
        (repo / ".git" / "hooks" / name).chmod(0o755)
    git_run(repo, "config", "core.fsmonitor", f"touch {marker}")
    git_run(repo, "config", "core.hooksPath", str(repo / ".git" / "hooks"))
    row = repository_register(source=str(repo))
    repository_sync(repo=row)
    dataset_build(repositories=[row])
    assert not marker.exists()
