"""Hardened git: every call runs with no hooks, no fsmonitor, no system or global config, no
prompts, fsck on transfer and no submodule recursion. Blobs are read from the object store."""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import MirrorError
from trainer.mirrors.credentials import GitAuth

# `-c` options override anything a hostile repository's own config could set.
HARDENING = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.symlinks=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "submodule.recurse=false",
    "-c",
    "protocol.file.allow=user",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "transfer.fsckObjects=true",
    "-c",
    "fetch.fsckObjects=true",
    "-c",
    "receive.fsckObjects=true",
    "-c",
    "uploadpack.allowAnySHA1InWant=false",
    "-c",
    "safe.directory=*",
    "-c",
    "credential.helper=",
)


SSH_COMMAND = "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/false",
        SSH_ASKPASS="/bin/false",
        GIT_SSH_COMMAND=SSH_COMMAND,
        GIT_ALLOW_PROTOCOL="file:https:ssh:git",
        LC_ALL="C",
    )
    env.update(extra or {})
    return env


@contextmanager
def _auth_env(auth: GitAuth | None) -> Iterator[dict[str, str]]:
    """Credentials reach git through its environment, never its argv (which `ps` shows to anyone):
    an `http.extraHeader` set with GIT_CONFIG_COUNT for https, a 0600 key file for ssh."""
    if auth is None or not auth.secret:
        yield {}
        return
    if auth.is_ssh_key:
        from appliance import paths

        fd, name = tempfile.mkstemp(prefix="key-", dir=paths.private_tmp_dir())
        try:
            with os.fdopen(fd, "w") as f:
                f.write(auth.secret if auth.secret.endswith("\n") else auth.secret + "\n")
            yield {"GIT_SSH_COMMAND": f"{SSH_COMMAND} -o IdentitiesOnly=yes -i {shlex.quote(name)}"}
        finally:
            os.unlink(name)
        return
    basic = base64.b64encode(f"{auth.username or 'git'}:{auth.secret}".encode()).decode()
    yield {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }


def _redact(message: str, auth: GitAuth | None) -> str:
    if auth and auth.secret:
        message = message.replace(auth.secret, "***")
    return re.sub(r"(://[^/@\s:]*:)[^@\s/]*@", r"\1***@", message)


def git(
    *args: str,
    cwd: Path | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
    auth: GitAuth | None = None,
) -> bytes:
    """Run one hardened git command; raise MirrorError with git's own message on failure (with any
    credential blanked out). `timeout` defaults to HEARTH_GIT_TIMEOUT_S."""
    if timeout is None:
        from django.conf import settings

        timeout = settings.HEARTH_GIT_TIMEOUT_S
    cmd = ["git", *HARDENING, *args]
    with _auth_env(auth) as extra:
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                input=input,
                capture_output=True,
                env=git_env(extra),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise MirrorError(
                f"git {args[0]} took longer than {timeout:.0f} s and was stopped "
                "(HEARTH_GIT_TIMEOUT_S sets the limit)."
            ) from exc
        except OSError as exc:  # the mirror folder is gone, or git is not installed
            raise MirrorError(f"git {args[0]} could not start: {exc.strerror} ({exc.filename}).") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        last = message[-1] if message else "exit " + str(proc.returncode)
        raise MirrorError(f"git {args[0]} failed: {_redact(last, auth)}")
    return proc.stdout


@dataclass(frozen=True)
class TreeEntry:
    path: str  # decoded with surrogateescape: odd bytes survive a round trip
    mode: str
    kind: str  # blob or commit (a submodule)
    oid: str
    size: int | None

    @property
    def is_symlink(self) -> bool:
        return self.mode == "120000"

    @property
    def is_submodule(self) -> bool:
        return self.kind == "commit"


def tree_list(mirror: Path, sha: str) -> list[TreeEntry]:
    """Every entry of the tree at `sha`, without a checkout."""
    out = git("ls-tree", "-r", "-z", "--long", "--full-tree", sha, cwd=mirror)
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid, size = meta.split()
        entries.append(
            TreeEntry(
                path=raw_path.decode("utf-8", errors="surrogateescape"),
                mode=mode.decode(),
                kind=kind.decode(),
                oid=oid.decode(),
                size=None if size == b"-" else int(size),
            )
        )
    return entries


def blobs_read(mirror: Path, oids: list[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (oid, content) for each blob, in order, through one `git cat-file --batch` process.

    A thread feeds the object names while this one reads, so the pipe never stalls on a flush
    per object."""
    if not oids:
        return
    try:
        proc = subprocess.Popen(
            ["git", *HARDENING, "cat-file", "--batch", "--buffer"],
            cwd=mirror,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=git_env(),
        )
    except OSError as exc:
        raise MirrorError(f"git cat-file could not start: {exc.strerror} ({exc.filename}).") from exc
    assert proc.stdin and proc.stdout
    stdin = proc.stdin

    def feed() -> None:
        try:
            stdin.write(b"".join(oid.encode() + b"\n" for oid in oids))
        except (BrokenPipeError, ValueError):
            pass  # the reader stopped early; closing below ends the process
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        for oid in oids:
            header = proc.stdout.readline().split()
            if len(header) < 3 or header[1] != b"blob":
                raise MirrorError(f"object {oid} is not a readable blob")
            size = int(header[2])
            data = proc.stdout.read(size)
            proc.stdout.read(1)  # the newline after each object
            yield oid, data
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        writer.join(timeout=30)


@dataclass(frozen=True)
class History:
    """When each path was last changed on a branch, as its commits record it."""

    changed: dict[str, int]  # path (surrogateescape) -> commit time, seconds since the epoch
    commits: int


def history_read(mirror: Path, sha: str) -> History:
    """The commit time of the last commit on the first-parent line to `sha` that changed each path,
    in one `git log` pass (a merge counts as the change of what it brought onto the branch). Paths
    deleted later are listed too; callers look up the paths they hold."""
    out = git(
        "log",
        "-z",
        "--first-parent",
        "-m",
        "--no-renames",
        "--name-only",
        "--format=%x00%ct",
        sha,
        "--",
        cwd=mirror,
    )
    changed: dict[str, int] = {}
    commits, when, header, first = 0, 0, False, False
    # Tokens: "" then a commit time starts each commit; its first path carries a leading newline.
    for token in out.split(b"\0"):
        if header:
            commits, when, header, first = commits + 1, int(token), False, True
        elif not token:
            header = True
        else:
            path = (token[1:] if first and token.startswith(b"\n") else token).decode(
                "utf-8", errors="surrogateescape"
            )
            first = False
            if when > changed.get(path, -1):
                changed[path] = when
    return History(changed, commits)


def remote_head_branch(mirror: Path, auth: GitAuth | None = None) -> str | None:
    """The branch the remote's HEAD points at, asked afresh (it can change after the first clone)."""
    out = git("ls-remote", "--symref", "origin", "HEAD", cwd=mirror, auth=auth, timeout=120).decode()
    for line in out.splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            return line[5:-5].strip().removeprefix("refs/heads/")
    return None
