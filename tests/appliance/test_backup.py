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


# --- a crafted archive writes nowhere but this instance's own places ---------------------------------


def _rewrite_archive(
    src: Path, dst: Path, *, manifest: dict | None = None, extra: dict[str, bytes] | None = None
):
    """A copy of the archive `src` with its manifest replaced and members added."""
    import io

    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            if member.name == "manifest.json" and manifest is not None:
                continue
            tout.addfile(member, tin.extractfile(member) if member.isfile() else None)
        added = {**({"manifest.json": json.dumps(manifest).encode()} if manifest else {}), **(extra or {})}
        for name, data in added.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


GOOD = {
    "format": 1,
    "home": "/srv/hearth",
    "database": {
        "engine": "django.db.backends.sqlite3",
        "file": "database/hearth.sqlite3",
        "sha256": "0" * 64,
    },
}


@pytest.mark.parametrize(
    "change",
    [
        {"database": {**GOOD["database"], "file": "/etc/hearth/victim.sqlite3"}},
        {"database": {**GOOD["database"], "file": "database/../../victim.sqlite3"}},
        {"database": {**GOOD["database"], "file": "home/secret_key"}},
        {"database": {**GOOD["database"], "file": "database/hearth.pgdump"}},
        {"database": "database/hearth.sqlite3"},
        {"home": ""},
        {"home": "/"},
        {"home": "srv/hearth"},
        {"home": "/srv/../etc"},
        {"keys": "no"},
    ],
)
def test_a_manifest_whose_paths_escape_is_refused(tmp_path, change):
    import io

    from appliance.backup import BackupError, backup_manifest

    archive = tmp_path / "crafted.tar"
    data = json.dumps({**GOOD, **change}).encode()
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BackupError, match="manifest"):
        backup_manifest(archive)
    good = tmp_path / "good.tar"
    _rewrite_archive(archive, good, manifest=GOOD)
    assert backup_manifest(good)["home"] == "/srv/hearth"


def test_restore_reads_no_database_outside_the_archive(tmp_path):
    """The manifest points the dump at another SQLite file on the machine (checksum and all): refused,
    and this instance's database is still its own."""
    import hashlib
    import shutil

    home, elsewhere = tmp_path / "h", tmp_path / "elsewhere"
    manage(home, "migrate", "--noinput", "-v0")
    archive = tmp_path / "b.tar"
    manage(home, "backup", "--output", str(archive))
    elsewhere.mkdir()
    victim = elsewhere / "victim.sqlite3"
    shutil.copy(home / "hearth.sqlite3", victim)
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    manifest["database"].update(file=str(victim), sha256=hashlib.sha256(victim.read_bytes()).hexdigest())
    crafted = tmp_path / "crafted.tar"
    _rewrite_archive(archive, crafted, manifest=manifest)
    proc = manage(home, "restore", str(crafted), "--force", check=False)
    assert proc.returncode != 0 and "Refusing" in proc.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["victim.sqlite3"]


@pytest.mark.parametrize("member", ["home/hearth.sqlite3-wal", "home/backups/planted.tar", "home/tmp/x"])
def test_restore_writes_no_instance_file_over_the_database_or_backups(tmp_path, member):
    home = tmp_path / "h"
    manage(home, "migrate", "--noinput", "-v0")
    archive = tmp_path / "b.tar"
    manage(home, "backup", "--output", str(archive))
    kept = home / "backups" / "kept.tar"
    kept.parent.mkdir(exist_ok=True)
    kept.write_bytes(b"an earlier backup")
    crafted = tmp_path / "crafted.tar"
    _rewrite_archive(archive, crafted, extra={member: b"planted"})
    proc = manage(home, "restore", str(crafted), "--force", check=False)
    assert proc.returncode != 0 and "refusing archive member" in proc.stderr
    assert kept.read_bytes() == b"an earlier backup"
    assert (
        not (home / "hearth.sqlite3-wal").exists() or (home / "hearth.sqlite3-wal").read_bytes() != b"planted"
    )
    assert not (home / "backups" / "planted.tar").exists()


# --- backups without keys ----------------------------------------------------------------------------

CREDENTIAL = """
import django, json; django.setup()
from trainer.mirrors.credentials import credential_encrypt
from trainer.models import Repository
Repository.objects.create(name="corp", source="https://git.corp.example/app.git", username="ci",
                          credential=credential_encrypt("s3cret-token"))
print(json.dumps({}))
"""

DECRYPT = """
import django, json; django.setup()
from appliance.errors import MirrorError
from trainer.mirrors.credentials import credential_decrypt
from trainer.models import Repository
try:
    plain = credential_decrypt(Repository.objects.get(name="corp").credential)
except MirrorError as exc:
    plain = "refused: " + str(exc)
print(json.dumps({"plain": plain}))
"""


def test_backup_without_keys_leaves_the_keys_out_and_restore_says_what_is_needed(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    manage(old, "migrate", "--noinput", "-v0")
    py(old, CREDENTIAL)
    (old / "engine_secret").write_text("e" * 64)
    (old / "tls").mkdir()
    (old / "tls" / "key.pem").write_text("-----BEGIN PRIVATE KEY-----")
    archive = tmp_path / "keyless.tar"
    out = manage(old, "backup", "--without-keys", "--output", str(archive)).stdout
    assert "keys: left out" in out
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest["keys"] is False
    assert "database/hearth.sqlite3" in names
    assert not [
        n for n in names if n in ("home/secret_key", "home/engine_secret") or n.startswith("home/tls")
    ]
    old_key = (old / "secret_key").read_text().strip()
    assert old_key.encode() not in archive.read_bytes()

    manage(new, "migrate", "--noinput", "-v0")
    new_key = (new / "secret_key").read_text()
    restored = manage(new, "restore", str(archive)).stdout
    assert "carries none" in restored and "1 repositories have stored git credentials" in restored
    assert "secret_key" in restored and "HEARTH_CREDENTIAL_KEY" in restored
    assert (new / "secret_key").read_text() == new_key  # the instance keeps its own key
    assert py(new, DECRYPT)["plain"].startswith("refused")
    # What the message asks for: the original key, given back, decrypts the credential again.
    with_key = hearth_env(new, HEARTH_SECRET_KEY=old_key)
    import subprocess
    import sys

    got = subprocess.run(
        [sys.executable, "-c", DECRYPT], cwd=ROOT, env=with_key, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(got.strip().splitlines()[-1])["plain"] == "s3cret-token"


def test_a_full_backup_still_carries_the_keys(tmp_path):
    home = tmp_path / "h"
    manage(home, "migrate", "--noinput", "-v0")
    archive = tmp_path / "full.tar"
    manage(home, "backup", "--output", str(archive))
    with tarfile.open(archive) as tar:
        assert "home/secret_key" in tar.getnames()
        assert json.loads(tar.extractfile("manifest.json").read())["keys"] is True
