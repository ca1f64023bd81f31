"""Mirrors: registration by path, errors a person can read, and hostile repositories stay inert."""

from __future__ import annotations

import io
from pathlib import Path

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
def test_a_detached_head_uses_the_only_branch_or_says_what_to_do(code_repo, tmp_path):
    from trainer.mirrors.services import repository_register

    sha = git_run(code_repo, "rev-parse", "HEAD").strip()
    git_run(code_repo, "checkout", "-q", "--detach", sha)
    (code_repo / "loose.py").write_text("x = 1\n")  # a commit on no branch: the clone's HEAD stays detached
    git_run(code_repo, "add", "loose.py")
    git_run(code_repo, "commit", "-qm", "loose")
    repo = repository_register(source=str(code_repo), name="one-branch")
    assert (repo.status, repo.default_branch, repo.head_sha) == ("ready", "main", sha)

    git_run(code_repo, "branch", "feature", sha)
    try:
        repo = repository_register(source=str(code_repo), name="two-branches")
        reason = repo.status_reason
    except MirrorError as exc:
        reason = str(exc)
    assert "HEAD is detached (it names no branch) and it has 2 branches (feature, main)" in reason
    assert "set the repository's branch" in reason


@pytest.mark.django_db
def test_mirror_add_command_reports_error_without_traceback(tmp_path):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="not a git repository"):
        call_command("mirror_add", str(tmp_path))


def _armed_mirror_sync(tmp_path) -> Path:
    """Register a repository, then arm the mirror itself (as a tampered or registered-in-place bare
    repository would be) with hooks and config that leave a marker when git runs them; a new
    upstream commit makes the next sync update refs, which is when git would run them."""
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register, repository_sync

    marker = tmp_path / "pwned"
    repo = git_repo_make(tmp_path / "upstream", {"a.py": "x = 1\n" * 5, "b.py": "def f():\n    return 2\n"})
    row = repository_register(source=str(repo))
    mirror = Path(row.mirror_path)
    hook = f"#!/bin/sh\ntouch {marker}\n"
    for name in ("reference-transaction", "post-fetch", "pre-auto-gc", "post-checkout", "fsmonitor-watchman"):
        (mirror / "hooks").mkdir(exist_ok=True)
        (mirror / "hooks" / name).write_text(hook)
        (mirror / "hooks" / name).chmod(0o755)
    git_run(mirror, "config", "core.hooksPath", str(mirror / "hooks"))
    git_run(mirror, "config", "core.fsmonitor", f"touch {marker}")
    (repo / "c.py").write_text("def g():\n    return 3\n")
    git_run(repo, "add", "-A")
    git_run(repo, "commit", "-q", "-m", "more")
    repository_sync(repo=row)
    dataset_build(repositories=[row], options=DatasetOptions(min_tokens=0))
    return marker


@pytest.mark.django_db
def test_hooks_and_fsmonitor_of_a_mirror_never_run(tmp_path):
    assert not _armed_mirror_sync(tmp_path).exists()


@pytest.mark.django_db
def test_without_the_hardening_the_armed_mirror_does_run_its_hook(tmp_path, monkeypatch):
    """The test above can fail: with Hearth's `-c` hardening removed, the same sync runs the hook."""
    from trainer.mirrors import git

    monkeypatch.setattr(git, "HARDENING", ())
    assert _armed_mirror_sync(tmp_path).exists()


@pytest.mark.django_db
def test_register_by_file_url_with_branch_override_and_redetection(tmp_path):
    from trainer.mirrors.services import repository_register, repository_sync

    repo = git_repo_make(tmp_path / "up", {"a.py": "x = 1\n"})
    git_run(repo, "checkout", "-q", "-b", "release")
    (repo / "b.py").write_text("y = 2\n")
    git_run(repo, "add", "-A")
    git_run(repo, "commit", "-q", "-m", "release")
    pinned = repository_register(source=f"file://{repo}", name="pinned", branch="main")
    assert pinned.default_branch == "main" and pinned.source == f"file://{repo}"
    followed = repository_register(source=f"file://{repo}", name="followed")
    assert followed.default_branch == "release"  # the remote HEAD at clone time
    git_run(repo, "checkout", "-q", "main")  # the remote's default branch changes
    repository_sync(repo=followed)
    assert followed.default_branch == "main"
    assert followed.head_sha == git_run(repo, "rev-parse", "main").strip()


@pytest.mark.django_db
def test_credentials_encrypted_at_rest_and_never_in_argv_or_errors(tmp_path, monkeypatch):
    import subprocess

    from trainer.mirrors import git as gitmod
    from trainer.mirrors.services import repository_auth, repository_create, repository_sync
    from trainer.models import Repository

    secret = "s3cr3t-T0ken-xyz"
    repo = repository_create(source=f"https://ci-bot:{secret}@git.corp.invalid/team/app.git")
    row = Repository.objects.get(pk=repo.pk)
    assert row.source == "https://git.corp.invalid/team/app.git"
    assert row.username == "ci-bot" and row.credential and secret not in row.credential
    assert repository_auth(row).secret == secret and secret not in repr(repository_auth(row))

    seen = []
    real_run = subprocess.run

    def spy(cmd, **kwargs):
        seen.append((cmd, kwargs.get("env") or {}))
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(gitmod.subprocess, "run", spy)
    with pytest.raises(MirrorError) as info:
        repository_sync(repo=row)
    assert secret not in str(info.value)
    row.refresh_from_db()
    assert row.status == "failed" and secret not in row.status_reason and secret not in row.log
    clone = [(cmd, env) for cmd, env in seen if "clone" in cmd]
    assert clone and all(secret not in " ".join(cmd) for cmd, _ in seen)
    _, env = clone[0]
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader" and env["GIT_CONFIG_VALUE_0"].startswith(
        "Authorization: Basic"
    )


@pytest.mark.django_db
def test_plain_http_and_unknown_schemes_are_refused():
    from trainer.mirrors.services import repository_register

    with pytest.raises(MirrorError, match="https"):
        repository_register(source="http://git.corp.invalid/x.git")
    with pytest.raises(MirrorError, match="Unsupported URL scheme"):
        repository_register(source="ext::sh -c touch% /tmp/pwned")


@pytest.mark.django_db
def test_schedule_is_idempotent_and_configurable(settings):
    from django.utils import timezone
    from django_q.models import Schedule

    from trainer.mirrors.services import SCHEDULE_NAME, mirror_schedule_ensure

    settings.HEARTH_MIRROR_SYNC_MINUTES = 30
    mirror_schedule_ensure()
    mirror_schedule_ensure()
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert schedule.minutes == 30 and schedule.func == "trainer.mirrors.tasks.mirrors_sync_scheduled"
    assert schedule.next_run > timezone.now()  # registering already synced: the first run comes later
    settings.HEARTH_MIRROR_SYNC_MINUTES = 15
    mirror_schedule_ensure()
    assert Schedule.objects.get(name=SCHEDULE_NAME).minutes == 15
    settings.HEARTH_MIRROR_SYNC_MINUTES = 0
    assert mirror_schedule_ensure() == "off"
    assert not Schedule.objects.filter(name=SCHEDULE_NAME).exists()


@pytest.mark.django_db
def test_scheduled_task_and_sync_command(code_repo):
    from django.core.management import call_command

    from trainer.mirrors.services import repository_register
    from trainer.mirrors.tasks import mirrors_sync_scheduled

    repository_register(source=str(code_repo))
    assert mirrors_sync_scheduled() == "1 synced, 0 failed"
    out = io.StringIO()
    call_command("mirror_sync", "--all", stdout=out, stderr=io.StringIO())
    assert "sample: main at" in out.getvalue() and "1 synced, 0 failed" in out.getvalue()


# ------------------------------------------------------------------ the hostile-repository corpus

HOSTILE_EXPECTED = {
    "escape.py": "symlink",
    "libsub": "submodule",
    "models/weights.bin": "lfs-pointer",
    "src/pointer.py": "lfs-pointer",
    "big.py": "too-large",
    "assets/logo.png": "binary",
    "src/blob.py": "binary",
    "src/latin1.py": "not-utf8",
    "..evil.py": "unsafe-path",
    "src/..hidden/x.py": "unsafe-path",
    "src/new\nline.py": "unsafe-path",
    "src/bad\\xff.py": "unsafe-path",
    "src/back\\slash.py": "unsafe-path",
    "static/app.min.js": "minified",
    "static/bundle.js": "minified",
    "node_modules/left-pad/index.js": "vendored",
    "vendor/lib.py": "vendored",
    ".env": "secret-file",
    "deploy/id_rsa": "secret-file",
    "src/models_pb2.py": "generated",
    "package-lock.json": "lockfile",
    "data/users.csv": "data-file",
}


@pytest.fixture
def hostile_repo(tmp_path):
    """A repository built to attack whoever reads it, plus one honest file."""
    import os

    outside = tmp_path / "outside-secret.txt"
    outside.write_text("root:x:0:0:TOP SECRET OUTSIDE THE REPO\n")
    sub = git_repo_make(tmp_path / "sub", {"s.py": "z = 3\n"})
    files: dict[str, str | bytes] = {
        "src/app.py": "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n",
        "src/util.py": "import sys\n\n\ndef main(argv):\n    return len(argv)\n\n\nsys.exit(main(sys.argv))\n",
        ".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n",
        "models/weights.bin": "version https://git-lfs.github.com/spec/v1\noid sha256:"
        + "a" * 64
        + "\nsize 1\n",
        "src/pointer.py": "version https://git-lfs.github.com/spec/v1\noid sha256:" + "b" * 64 + "\nsize 9\n",
        "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00binary",
        "src/blob.py": b"x = 1\n\x00\x01\x02\xff",
        "src/latin1.py": b"# caf\xe9 cr\xe8me\nx = 1\n",
        "..evil.py": "x = 1\n",
        "src/..hidden/x.py": "x = 1\n",
        "src/new\nline.py": "x = 1\n",
        "src/back\\slash.py": "x = 1\n",
        "static/app.min.js": "var a=1;" * 200,
        "static/bundle.js": "(function(){" + "var q=[1,2,3];" * 400 + "})();\n",
        "node_modules/left-pad/index.js": "module.exports = function leftPad() {}\n",
        "vendor/lib.py": "def vendored():\n    pass\n",
        ".env": "DATABASE_PASSWORD=hunter2-prod\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzzREALKEY\n",
        "deploy/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        "src/models_pb2.py": "# Generated by the protocol buffer compiler.  DO NOT EDIT!\nx = 1\n",
        "package-lock.json": '{"lockfileVersion": 3}\n',
        "data/users.csv": "id,name\n1,alice\n",
    }
    repo = git_repo_make(tmp_path / "hostile", files)
    (repo / "escape.py").symlink_to(outside)
    with open(repo / "big.py", "wb") as f:  # 50 MB, sparse: instant to create
        f.truncate(50 * 1024 * 1024)
    os.close(os.open(os.path.join(os.fsencode(repo), b"src", b"bad\xff.py"), os.O_CREAT | os.O_WRONLY, 0o644))
    git_run(repo, "add", "-A")
    sub_sha = git_run(sub, "rev-parse", "HEAD").strip()
    git_run(repo, "update-index", "--add", "--cacheinfo", f"160000,{sub_sha},libsub")
    git_run(repo, "commit", "-q", "-m", "hostile")
    # Armed only after the fixture's own commits: anything that runs them leaves the marker.
    marker = tmp_path / "pwned"
    hook = f"#!/bin/sh\ntouch {marker}\n"
    for name in (
        "post-checkout",
        "pre-commit",
        "post-merge",
        "reference-transaction",
        "pre-auto-gc",
        "post-rewrite",
        "pre-push",
        "push-to-checkout",
        "post-index-change",
    ):
        (repo / ".git" / "hooks" / name).write_text(hook)
        (repo / ".git" / "hooks" / name).chmod(0o755)
    git_run(repo, "config", "core.fsmonitor", f"touch {marker}")
    git_run(repo, "config", "core.hooksPath", str(repo / ".git" / "hooks"))
    git_run(repo, "config", "core.sshCommand", f"touch {marker}")
    git_run(repo, "config", "uploadpack.packObjectsHook", f"touch {marker}")
    return repo, marker, outside


@pytest.mark.django_db
def test_hostile_repository_every_case_skipped_with_its_reason(hostile_repo):
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register, repository_sync
    from trainer.models.datasets import DatasetFile
    from trainer.tools.dataset_files import dataset_files_read

    repo, marker, outside = hostile_repo
    row = repository_register(source=str(repo))
    repository_sync(repo=row)
    dataset = dataset_build(repositories=[row], options=DatasetOptions(min_tokens=0))
    assert dataset.status == "ready"
    reasons = {f.path: f.reason for f in DatasetFile.objects.filter(dataset=dataset, split="dropped")}
    for path, reason in HOSTILE_EXPECTED.items():
        assert reasons.get(path) == reason, (path, reasons.get(path), reason)
    kept = {f.path for f in DatasetFile.objects.filter(dataset=dataset).exclude(split="dropped")}
    assert kept == {"src/app.py", "src/util.py"}, kept
    texts = "".join(
        r["text"] for split in ("train", "heldout") for r in dataset_files_read(Path(dataset.path), split)
    )
    assert "TOP SECRET" not in texts and "hunter2" not in texts
    assert not marker.exists()
    # the symlink was never followed, inside Hearth's mirror either
    assert outside.read_text().startswith("root:x")
    assert not any(p.is_symlink() for p in Path(row.mirror_path).rglob("*"))
