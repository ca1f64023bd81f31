"""Shared fixtures: an instance dir per session, real git repositories, the micro base model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Hearth Tests",
    "GIT_AUTHOR_EMAIL": "tests@hearth.invalid",
    "GIT_COMMITTER_NAME": "Hearth Tests",
    "GIT_COMMITTER_EMAIL": "tests@hearth.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git_run(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def git_repo_make(path: Path, files: dict[str, str | bytes], branch: str = "main") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git_run(path, "init", "-q", "-b", branch)
    for rel, content in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    git_run(path, "add", "-A")
    git_run(path, "commit", "-q", "-m", "initial")
    return path


def stdlib_files(names: list[str]) -> dict[str, str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return {f"src/{Path(n).name}": (root / n).read_text() for n in names}


CODE_FILES = [
    "json/decoder.py",
    "json/encoder.py",
    "json/scanner.py",
    "json/__init__.py",
    "textwrap.py",
    "shlex.py",
    "fnmatch.py",
    "glob.py",
    "colorsys.py",
    "bisect.py",
    "heapq.py",
    "keyword.py",
    "queue.py",
    "sched.py",
    "stat.py",
    "string.py",
    "this.py",
    "tty.py",
    "copy.py",  # uu.py left the standard library in Python 3.13
    "wave.py",
    "pprint.py",
    "netrc.py",
]


@pytest.fixture(autouse=True, scope="session")
def _instance_home(tmp_path_factory):
    from django.conf import settings
    from django_q.conf import Conf

    home = tmp_path_factory.mktemp("hearth-home")
    settings.HEARTH_HOME = home
    # Servers a test starts (qcluster, engine, web) read the secret key from this home: give them the
    # one this process loaded, or django-q's signed task packages would not verify.
    key = home / "secret_key"
    key.write_text(settings.SECRET_KEY + "\n")
    key.chmod(0o600)
    settings.HEARTH_RETRAIN_MIN_INTERVAL_H = 0  # tests train the same base many times
    Conf.SYNC = True  # unit tests run jobs in-process; integration tests start a real qcluster
    yield home


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """A file-backed test database, so servers started by a test (qcluster, engine) share it. A
    PostgreSQL server (HEARTH_DATABASE, `make test-scaleout`) is shared as it is."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(
            tmp_path_factory.mktemp("db") / "test.sqlite3"
        )


@pytest.fixture(autouse=True)
def _auth_cache_empty(monkeypatch):
    """Tokens, failure and usage counts a web process keeps belong to the test database they came
    from. A test's requests fall in one rate window (a minute of the wall clock) whenever it runs: a
    test that crossed a minute's end counted its requests in two windows."""
    import types

    from inference import auth

    def clear():
        auth.auth_cache_clear()
        with auth._pending_lock:
            auth._pending.clear()

    clock = types.SimpleNamespace(time=lambda: 60 * 29_000_000 + 30.0, monotonic=time.monotonic)
    monkeypatch.setattr(auth, "time", clock)
    clear()
    yield
    clear()


@pytest.fixture(autouse=True)
def _redis_queue_empty(settings):
    """On the Redis broker a queue outlives the test database: start every test with it empty."""
    if settings.HEARTH_REDIS_URL:
        from django_q.brokers import get_broker

        for queue in {settings.Q_CLUSTER["name"], settings.HEARTH_GPU_QUEUE} - {""}:
            get_broker(queue).purge_queue()


def child_env(settings, **extra: str) -> dict[str, str]:
    """The environment for a Hearth process started by a test (qcluster, engine): the same instance
    directory and the test database (the SQLite file, or a postgres:// URL naming the test database)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        database = str(db["NAME"])
    else:
        from urllib.parse import quote

        auth = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
        database = f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return {**os.environ, "HEARTH_HOME": str(settings.HEARTH_HOME), "HEARTH_DATABASE": database, **extra}


@pytest.fixture
def code_repo(tmp_path) -> Path:
    """A small but real Python repository (standard library modules) plus a binary and a README."""
    files: dict[str, str | bytes] = stdlib_files(CODE_FILES)
    files["README.md"] = "# sample\n\nA sample project.\n"
    files["assets/logo.png"] = b"\x89PNG\r\n\x1a\n\x00\x00binary"
    return git_repo_make(tmp_path / "sample", files)


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory) -> Path:
    """The bootstrap micro model's HF folder, built once per session."""
    from trainer.basemodels.bootstrap import micro_model_build

    out = tmp_path_factory.mktemp("micro") / "hf"
    micro_model_build(out, seed=0)
    return out


@pytest.fixture
def micro_base(db, micro_dir):
    """A ready BaseModel row for the micro model, with its GGUF (converted once per session)."""
    from trainer.basemodels.services import _fim_keys_write
    from trainer.models import BaseModel
    from trainer.tools.gguf import gguf_convert

    gguf = micro_dir.parent / "model-f16.gguf"
    if not gguf.exists():
        gguf_convert(micro_dir, gguf, outtype="f16", log=lambda m: None)
        _fim_keys_write(gguf, micro_dir)
    base = BaseModel.objects.create(
        slug="hearth-micro-test",
        display_name="micro",
        hf_path=str(micro_dir),
        gguf_path=str(gguf),
        architecture="LlamaForCausalLM",
        fim_format="hearth",
        can_infill=True,
    )
    base.transition(BaseModel.Status.READY)
    return base


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(autouse=True)
def _no_engine_outlives_its_test():
    """An engine's model watcher left running polls a database the next test does not hold, and
    logs a traceback every poll; stop every engine a test starts (`engine.stop()`)."""
    import threading

    yield
    left = [t for t in threading.enumerate() if t.name == "model-watch"]
    for thread in left:
        thread.join(timeout=3)
    alive = [t for t in left if t.is_alive()]
    assert not alive, f"{len(alive)} engine watcher(s) still running after the test: call engine.stop()"
