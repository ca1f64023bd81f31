"""Crash-safe replacement of files and folders: a crash at any step leaves the old or the new version."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from appliance import paths

OLD = {"state.pt": "old weights", "meta.json": '{"step": 10}'}
NEW = {"state.pt": "new weights", "meta.json": '{"step": 20}', "extra/notes.txt": "only in the new one"}


class Crash(BaseException):
    """The process dies here: no `except Exception` cleanup runs, as after a kill or a power cut."""


def _crash_at(monkeypatch, n: int) -> list[str]:
    """Make the n-th disk step (a rename, an fsync or a delete) raise instead of running: a crash
    between steps n-1 and n. Returns the names of the steps reached."""
    reached: list[str] = []

    def wrap(name, fn):
        def step(*args, **kwargs):
            reached.append(name)
            if len(reached) == n:
                raise Crash(name)
            return fn(*args, **kwargs)

        return step

    for owner, name in ((os, "replace"), (os, "rename"), (paths, "_fsync_path"), (shutil, "rmtree")):
        monkeypatch.setattr(owner, name, wrap(name, getattr(owner, name)))
    return reached


def _read(folder: Path) -> dict[str, str] | None:
    if not folder.is_dir():
        return None
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


def _write(files: dict[str, str]):
    def write(folder: Path) -> None:
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)

    return write


def test_dir_replace_crash_at_any_step_leaves_old_or_new(tmp_path, monkeypatch):
    outcomes = []
    for n in range(1, 100):
        root = tmp_path / f"case-{n}"
        target = root / "checkpoint"
        root.mkdir()
        target.mkdir()
        _write(OLD)(target)
        with monkeypatch.context() as m:
            reached = _crash_at(m, n)
            try:
                paths.atomic_dir_replace(target, _write(NEW))
                crashed = False
            except Crash:
                crashed = True
        # Right after the crash, before any recovery: one whole version is on disk.
        present = target.exists()
        on_disk = _read(target) if present else _read(root / "checkpoint.old")
        assert on_disk in (OLD, NEW), (n, reached, on_disk)
        # Recovery (what the next load or save runs first) puts that version back at `target`.
        assert paths.atomic_dir_recover(target)
        assert _read(target) == on_disk, (n, reached)
        assert sorted(p.name for p in root.iterdir()) == ["checkpoint"]
        outcomes.append((reached[-1], present, "new" if on_disk == NEW else "old"))
        if not crashed:
            assert on_disk == NEW
            break
    else:
        pytest.fail("atomic_dir_replace never finished")
    kept = [o[2] for o in outcomes]
    # Old until the new folder (fsynced) is renamed into place, new from then on.
    assert kept == sorted(kept, reverse=True) and "old" in kept and kept[-1] == "new", outcomes
    assert ("replace", False, "old") in outcomes, outcomes  # the crash between the two renames
    assert len(outcomes) >= 8, outcomes  # every fsync, rename and delete was a crash point


def test_dir_replace_crash_between_renames_is_undone_by_recover(tmp_path, monkeypatch):
    """The one moment `target` itself is missing: the old version waits as its `.old` sibling."""
    target = tmp_path / "adapter"
    target.mkdir()
    _write(OLD)(target)
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "adapter.old":
            raise Crash("after renaming the old one aside")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Crash):
        paths.atomic_dir_replace(target, _write(NEW))
    monkeypatch.undo()
    assert not target.exists() and _read(tmp_path / "adapter.old") == OLD
    assert paths.atomic_dir_recover(target) and _read(target) == OLD
    paths.atomic_dir_replace(target, _write(NEW))  # the next save goes through
    assert _read(target) == NEW and sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_dir_replace_failing_writer_keeps_old_and_leaves_no_partial(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    _write(OLD)(target)

    def write(folder: Path) -> None:
        (folder / "state.pt").write_text("half")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        paths.atomic_dir_replace(target, write)
    assert _read(target) == OLD and sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_dir_replace_creates_a_missing_target(tmp_path):
    target = tmp_path / "new" / "adapter"
    target.parent.mkdir()
    paths.atomic_dir_replace(target, _write(NEW))
    assert _read(target) == NEW


def test_file_write_crash_at_any_step_leaves_old_or_new(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    kept = []
    for n in range(1, 20):
        target.write_bytes(b"old")
        with monkeypatch.context() as m:
            _crash_at(m, n)
            try:
                paths.atomic_write_text(target, "new")
                crashed = False
            except Crash:
                crashed = True
        kept.append(target.read_bytes())
        assert kept[-1] in (b"old", b"new")
        if not crashed:
            break
    assert kept[0] == b"old" and kept[-1] == b"new"
