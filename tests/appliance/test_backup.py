"""hearth backup / restore: one archive; a restore into a fresh HEARTH_HOME serves the same model and
accepts the same tokens."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.appliance.test_security import hearth_env, manage

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
import django, json; django.setup()
from inference.auth import token_create
from trainer.models import BaseModel
from appliance import paths
root = paths.basemodel_dir("tiny-base")
(root / "model.gguf").write_bytes(b"GGUF-not-really")
base = BaseModel.objects.create(slug="tiny-base", display_name="tiny", hf_path=str(root / "hf"),
                                gguf_path=str(root / "model.gguf"), manifest={"files": {"gguf": str(root / "model.gguf")}})
base.transition(BaseModel.Status.READY)
_, raw = token_create(username="alice", name="ide")
print(json.dumps({"token": raw}))
"""

CHECK = """
import django, json, sys; django.setup()
from django.conf import settings
from inference.auth import token_authenticate
from inference.engine.selection import served_model_select
from trainer.models import BaseModel
token = token_authenticate("Bearer " + sys.argv[1])
served = served_model_select()
print(json.dumps({"user": token.user.username, "served": served.id, "gguf": served.gguf_path,
                  "exists": __import__("os").path.exists(served.gguf_path),
                  "manifest": BaseModel.objects.get(slug="tiny-base").manifest, "key": settings.SECRET_KEY}))
"""


def py(home: Path, code: str, *args: str) -> dict:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=hearth_env(home),
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_restore_into_a_fresh_home_serves_the_same_model_and_accepts_the_same_token(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    manage(old, "migrate", "--noinput", "-v0")
    raw = py(old, SETUP)["token"]
    archive = tmp_path / "hearth.tar"
    manage(old, "backup", "--output", str(archive))

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert "database/hearth.sqlite3" in names and "home/secret_key" in names
    assert "home/basemodels/tiny-base/model.gguf" in names
    assert not any(n.startswith("home/hearth.sqlite3") for n in names)
    assert manifest["home"] == str(old.resolve()) and manifest["database"]["sha256"]

    manage(new, "migrate", "--noinput", "-v0")  # a fresh install: its own generated key
    assert (new / "secret_key").read_text() != (old / "secret_key").read_text()
    restored = manage(new, "restore", str(archive))
    assert "Restored" in restored.stdout

    got = py(new, CHECK, raw)
    assert got["user"] == "alice"
    assert got["served"] == "tiny-base"
    assert got["gguf"] == str(new.resolve() / "basemodels/tiny-base/model.gguf") and got["exists"]
    assert got["manifest"]["files"]["gguf"].startswith(str(new.resolve()))
    assert got["key"] == (old / "secret_key").read_text().strip()
    assert oct((new / "secret_key").stat().st_mode & 0o777) == oct(0o600)


def test_restore_refuses_an_instance_in_use_without_force(tmp_path):
    home = tmp_path / "h"
    manage(home, "migrate", "--noinput", "-v0")
    py(home, SETUP)
    archive = tmp_path / "b.tar"
    manage(home, "backup", "--output", str(archive))
    refused = manage(home, "restore", str(archive), check=False)
    assert refused.returncode != 0 and "not empty" in refused.stderr
    assert manage(home, "restore", str(archive), "--force").returncode == 0


def test_restore_refuses_a_tampered_archive(tmp_path):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        data = json.dumps({"format": 99}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        import io

        tar.addfile(info, io.BytesIO(data))
    home = tmp_path / "h"
    manage(home, "migrate", "--noinput", "-v0")
    proc = manage(home, "restore", str(bad), check=False)
    assert proc.returncode != 0 and "format" in proc.stderr


@pytest.mark.parametrize("kind", ["dotdot", "symlink"])
def test_unsafe_members_are_refused(tmp_path, kind):
    import io

    from appliance.backup import BackupError, _safe_members

    path = tmp_path / "x.tar"
    with tarfile.open(path, "w") as tar:
        if kind == "dotdot":
            info = tarfile.TarInfo("home/../../evil")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        else:
            info = tarfile.TarInfo("home/link")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    with tarfile.open(path) as tar, pytest.raises(BackupError, match="refusing"):
        list(_safe_members(tar, "home"))
