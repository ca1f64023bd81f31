"""Hardened git: every call runs with no hooks, no fsmonitor, no system or global config, no
prompts, fsck on transfer and no submodule recursion. Blobs are read from the object store."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import MirrorError

# `-c` options override anything a hostile repository's own config could set.
HARDENING = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.symlinks=false",
    "-c", "core.untrackedCache=false",
    "-c", "submodule.recurse=false",
    "-c", "protocol.file.allow=user",
    "-c", "protocol.ext.allow=never",
    "-c", "transfer.fsckObjects=true",
    "-c", "fetch.fsckObjects=true",
    "-c", "receive.fsckObjects=true",
    "-c", "uploadpack.allowAnySHA1InWant=false",
    "-c", "safe.directory=*",
    "-c", "credential.helper=",
)


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/false",
        SSH_ASKPASS="/bin/false",
        GIT_SSH_COMMAND="ssh -o BatchMode=yes -o StrictHostKeyChecking=yes",
        GIT_ALLOW_PROTOCOL="file:https:ssh:git",
        LC_ALL="C",
    )
    return env


def git(*args: str, cwd: Path | None = None, input: bytes | None = None, timeout: float = 600) -> bytes:
    """Run one hardened git command; raise MirrorError with git's own message on failure."""
    cmd = ["git", *HARDENING, *args]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, input=input, capture_output=True, env=git_env(), timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise MirrorError(f"git {args[0]} took longer than {timeout:.0f} s and was stopped.") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise MirrorError(f"git {args[0]} failed: {message[-1] if message else 'exit ' + str(proc.returncode)}")
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
    """Yield (oid, content) for each blob through one `git cat-file --batch` process."""
    if not oids:
        return
    proc = subprocess.Popen(
        ["git", *HARDENING, "cat-file", "--batch"],
        cwd=mirror,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=git_env(),
    )
    assert proc.stdin and proc.stdout
    try:
        for oid in oids:
            proc.stdin.write(oid.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) < 3 or header[1] != b"blob":
                raise MirrorError(f"object {oid} is not a readable blob")
            size = int(header[2])
            data = proc.stdout.read(size)
            proc.stdout.read(1)  # the newline after each object
            yield oid, data
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
