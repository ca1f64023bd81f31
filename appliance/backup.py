"""Back up and restore an instance: the database (SQLite online backup or pg_dump) and the instance
directory (mirrors, datasets, runs, models, keys) in one tar archive with a manifest.json.

    <archive>.tar
      manifest.json          format, Hearth version, source home, database engine, sha256 of the dump,
                             whether the keys are in it
      database/hearth.sqlite3 | database/hearth.pgdump
      home/...               HEARTH_HOME less its database files, backups/, tmp/ and static/ (and,
                             with `without_keys`, less secret_key, engine_secret and tls/)

What an archive holds that an attacker would want: the database (users' password hashes, API token
hashes, sessions, the audit log, telemetry, git credentials encrypted with the credential key), the
users' code (mirrors, datasets, models), and the keys: `secret_key` (it signs sessions and, unless
HEARTH_CREDENTIAL_KEY is set, the credential key is derived from it), `engine_secret` and the
self-signed TLS key under tls/. A key set in the environment (HEARTH_SECRET_KEY, HEARTH_CREDENTIAL_KEY)
is never in an archive. An archive made `without_keys` cannot decrypt the stored credentials alone:
restored, they need the original key (or are entered again).

A restore writes the database only where this instance's settings put it, and the instance files only
below HEARTH_HOME; a manifest or member that names anything else is refused.

Rows store absolute paths (GGUF files, datasets, mirrors): a restore into another HEARTH_HOME
rewrites the backed-up home's prefix to the new one, so the restored instance serves the same model.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db import connections

from appliance import paths
from appliance.errors import HearthError

FORMAT = 1
MANIFEST = "manifest.json"
SKIP_TOP = {"backups", "tmp", "static"}
# Key material in the instance directory, which an archive made `without_keys` leaves out.
KEY_TOP = {"secret_key", "engine_secret", "tls"}
DUMP_NAMES = {True: "hearth.sqlite3", False: "hearth.pgdump"}  # by "is the database SQLite?"
APPS_WITH_PATHS = ("appliance", "trainer", "inference", "webui")


class BackupError(HearthError):
    """A backup could not be written or an archive could not be restored."""


def _version() -> str:
    try:
        return importlib.metadata.version("hearth")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _db() -> dict:
    return settings.DATABASES["default"]


def _is_sqlite() -> bool:
    return _db()["ENGINE"].endswith("sqlite3")


def _sqlite_files() -> set[Path]:
    name = Path(_db()["NAME"]).resolve()
    return {
        name,
        name.with_name(name.name + "-wal"),
        name.with_name(name.name + "-shm"),
        name.with_name(name.name + "-journal"),
    }


def _pg_env() -> dict[str, str]:
    db = _db()
    env = dict(os.environ)
    env.update(
        {
            "PGHOST": db.get("HOST") or "",
            "PGPORT": str(db.get("PORT") or ""),
            "PGUSER": db.get("USER") or "",
            "PGDATABASE": db["NAME"],
        }
    )
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    return env


def _dump_database(into: Path) -> Path:
    if _is_sqlite():
        out = into / DUMP_NAMES[True]
        src = sqlite3.connect(_db()["NAME"], timeout=30)
        dst = sqlite3.connect(out)
        try:
            with dst:
                src.backup(dst)  # a consistent snapshot while web, worker and engine keep writing
        finally:
            dst.close()
            src.close()
        return out
    out = into / DUMP_NAMES[False]
    proc = subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", "--file", str(out)],
        env=_pg_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BackupError(f"pg_dump failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return out


def _key_files(home: Path) -> set[Path]:
    """Key files below `home` outside KEY_TOP: a TLS key the settings name elsewhere in the instance."""
    found = set()
    if settings.HEARTH_TLS_KEY:
        key = Path(settings.HEARTH_TLS_KEY).resolve()
        if key.is_relative_to(home):
            found.add(key)
    return found


def backup_create(
    output: Path | None = None, *, without_keys: bool = False, log: Callable[[str], None] = print
) -> Path:
    """Write one archive of the database and the instance directory; returns its path. `without_keys`
    leaves the key material out (see the module's docstring)."""
    home = paths.home().resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    output = Path(output) if output else paths._dir("backups") / f"hearth-backup-{stamp}.tar"
    output.parent.mkdir(parents=True, exist_ok=True)
    skip_files = _sqlite_files() if _is_sqlite() else set()
    skip_top = SKIP_TOP | (KEY_TOP if without_keys else set())
    if without_keys:
        skip_files |= _key_files(home)
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=output.parent) as tmp:
        tmp_path = Path(tmp)
        dump = _dump_database(tmp_path)
        log(f"database: {_db()['ENGINE'].rsplit('.', 1)[-1]} dumped ({dump.stat().st_size:,} bytes)")
        manifest = {
            "format": FORMAT,
            "hearth_version": _version(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "home": str(home),
            "database": {
                "engine": _db()["ENGINE"],
                "file": f"database/{dump.name}",
                "sha256": paths.sha256_file(dump),
            },
            "keys": not without_keys,
            "files": 0,
            "bytes": 0,
        }
        partial = output.with_name(output.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(dump, arcname=f"database/{dump.name}")
            for root, dirs, files in os.walk(home):
                rel_root = Path(root).relative_to(home)
                if rel_root == Path("."):
                    dirs[:] = sorted(d for d in dirs if d not in skip_top)
                    files = [f for f in files if f not in skip_top]
                else:
                    dirs.sort()
                for name in sorted(files):
                    path = Path(root) / name
                    if path.resolve() in skip_files or path.resolve() == output.resolve():
                        continue
                    tar.add(path, arcname=str(PurePosixPath("home") / rel_root / name), recursive=False)
                    manifest["files"] += 1
                    manifest["bytes"] += path.lstat().st_size
                for name in dirs:  # empty directories too (a fresh mirror folder)
                    tar.add(
                        Path(root) / name,
                        arcname=str(PurePosixPath("home") / rel_root / name),
                        recursive=False,
                    )
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
        partial.rename(output)
    log(f"backup: {output} ({manifest['files']} files, {manifest['bytes']:,} bytes of instance data)")
    if without_keys:
        log(
            "keys: left out (secret_key, engine_secret, tls/). Keep the key that encrypts the stored git "
            "credentials (HEARTH_HOME/secret_key, or HEARTH_CREDENTIAL_KEY) apart from this archive: a "
            "restore needs it to decrypt them."
        )
    return output


def backup_manifest(archive: Path) -> dict:
    """The archive's manifest, checked: its format, and paths that stay inside what a restore writes."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.getmember(MANIFEST)
            manifest = json.loads(tar.extractfile(member).read())
    except (OSError, KeyError, tarfile.TarError, ValueError, AttributeError) as exc:
        raise BackupError(f"{archive} is not a Hearth backup: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BackupError(f"{archive} is not a Hearth backup: its manifest is not an object.")
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"{archive} has backup format {manifest.get('format')!r}; this Hearth reads {FORMAT}."
        )
    _manifest_paths_check(manifest, archive)
    return manifest


def _manifest_paths_check(manifest: dict, archive: Path) -> None:
    """Refuse a manifest whose paths point anywhere but where a Hearth backup puts them: the dump is
    database/hearth.sqlite3 or database/hearth.pgdump, the backed-up home an absolute, normal path."""
    database = manifest.get("database")
    if not isinstance(database, dict) or not all(
        isinstance(database.get(k), str) for k in ("engine", "file", "sha256")
    ):
        raise BackupError(f"{archive}: the manifest does not describe its database (engine, file, sha256).")
    expected = f"database/{DUMP_NAMES[database['engine'].endswith('sqlite3')]}"
    if database["file"] != expected:
        raise BackupError(
            f"{archive}: the manifest names the database file {database['file']!r}; a Hearth backup of a "
            f"{database['engine']} database holds {expected!r}. Refusing it."
        )
    home = manifest.get("home")
    if (
        not isinstance(home, str)
        or not PurePosixPath(home).is_absolute()
        or str(PurePosixPath(home)) != home
        or ".." in PurePosixPath(home).parts
        or home == "/"
    ):
        raise BackupError(
            f"{archive}: the manifest names the backed-up home {home!r}, not an absolute instance path. "
            "Refusing it."
        )
    if not isinstance(manifest.get("keys", True), bool):
        raise BackupError(f"{archive}: the manifest's 'keys' is not true or false.")


def _instance_in_use() -> list[str]:
    from django.apps import apps

    # Through the app registry: the core names the rows it protects without importing the apps above it.
    found = []
    for label in ("trainer.Repository", "trainer.Dataset", "trainer.ModelVersion", "inference.ApiToken"):
        model = apps.get_model(label)
        count = model.objects.count()
        if count:
            found.append(f"{count} {model._meta.verbose_name_plural}")
    return found


def _restore_sqlite(dump: Path) -> None:
    connections.close_all()
    target = sqlite3.connect(_db()["NAME"], timeout=30)
    src = sqlite3.connect(dump)
    try:
        with target:
            src.backup(target)
    finally:
        src.close()
        target.close()


def _restore_postgres(dump: Path) -> None:
    connections.close_all()
    proc = subprocess.run(
        ["pg_restore", "--clean", "--if-exists", "--no-owner", "--dbname", _db()["NAME"], str(dump)],
        env=_pg_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BackupError(f"pg_restore failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")


def _rewrite(value, old: str, new: str):
    if isinstance(value, str):
        if value == old or value.startswith(old + "/"):
            return new + value[len(old) :]
        return value
    if isinstance(value, list):
        return [_rewrite(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, old, new) for k, v in value.items()}
    return value


def paths_rebase(old: str, new: str) -> int:
    """Rewrite every stored path under `old` (the backed-up home) to `new`; returns rows changed."""
    from django.apps import apps
    from django.db import models as m

    if old == new:
        return 0
    changed = 0
    for label in APPS_WITH_PATHS:
        for model in apps.get_app_config(label).get_models():
            fields = [
                f
                for f in model._meta.concrete_fields
                if isinstance(f, (m.CharField, m.TextField, m.JSONField)) and not f.primary_key
            ]
            if not fields:
                continue
            for row in model.objects.only("pk", *[f.name for f in fields]).iterator():
                updates = {}
                for f in fields:
                    value = getattr(row, f.attname)
                    new_value = _rewrite(value, old, new)
                    if new_value != value:
                        updates[f.attname] = new_value
                if updates:
                    model.objects.filter(pk=row.pk).update(**updates)
                    changed += 1
    return changed


def _safe_members(tar: tarfile.TarFile, prefix: str, *, refuse_top: frozenset[str] = frozenset()):
    """The members under `prefix`/, refusing any that could land outside it (absolute, `..`, links,
    devices) or on a top-level name of `refuse_top`."""
    for member in tar.getmembers():
        parts = PurePosixPath(member.name).parts
        if not parts or parts[0] != prefix:
            continue
        if member.name.startswith("/") or ".." in parts or member.issym() or member.islnk() or member.isdev():
            raise BackupError(f"refusing archive member {member.name!r}")
        if len(parts) > 1 and parts[1] in refuse_top:
            raise BackupError(f"refusing archive member {member.name!r}: a Hearth backup never holds it")
        yield member


def _database_names(home: Path) -> frozenset[str]:
    """Top-level names below `home` that are this instance's database files (SQLite in the home)."""
    if not _is_sqlite():
        return frozenset()
    return frozenset(p.name for p in _sqlite_files() if p.parent == home)


def backup_restore(archive: Path, *, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Restore `archive` into this instance (its HEARTH_HOME and database); returns the manifest.

    The database is written only where this instance's settings put it (the manifest names which member
    holds the dump, and nothing else); instance files only below HEARTH_HOME, never over the database
    files, backups/, tmp/ or static/."""
    from django.core.management import call_command

    archive = Path(archive).resolve()
    manifest = backup_manifest(archive)
    in_use = _instance_in_use()
    if in_use and not force:
        raise BackupError(f"This instance is not empty ({', '.join(in_use)}): pass --force to replace it.")
    db_member = manifest["database"]["file"]
    engine = manifest["database"]["engine"]
    if engine.endswith("sqlite3") != _is_sqlite():
        raise BackupError(f"The backup holds a {engine} database; this instance uses {_db()['ENGINE']}.")
    with_keys = manifest.get("keys", True)
    home = paths.home().resolve()
    refuse_top = frozenset(SKIP_TOP) | _database_names(home) | (frozenset() if with_keys else KEY_TOP)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=home) as tmp:
        tmp_path = Path(tmp)
        with tarfile.open(archive) as tar:
            members = [m for m in _safe_members(tar, "database") if m.name == db_member and m.isfile()]
            if len(members) != 1:
                raise BackupError(f"{archive} does not hold its database dump {db_member!r} as one file.")
            tar.extractall(tmp_path, members=members, filter="data")
            dump = tmp_path / db_member
            if paths.sha256_file(dump) != manifest["database"]["sha256"]:
                raise BackupError(f"{db_member} in {archive} does not match its manifest checksum.")
            staged = tmp_path / "staged"
            staged.mkdir()
            tar.extractall(
                staged, members=list(_safe_members(tar, "home", refuse_top=refuse_top)), filter="data"
            )
        source = staged / "home"
        count = 0
        if source.is_dir():
            for item in sorted(source.iterdir()):
                target = home / item.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                shutil.move(str(item), target)
                count += 1
        if (home / "secret_key").exists():
            (home / "secret_key").chmod(0o600)
        log(f"instance files: {count} top-level entries restored into {home}")
        if _is_sqlite():
            _restore_sqlite(dump)
        else:
            _restore_postgres(dump)
        log(f"database restored from {db_member}")
    call_command("migrate", "--noinput", verbosity=0)
    rebased = paths_rebase(manifest["home"], str(home))
    if rebased:
        log(f"paths: {rebased} rows moved from {manifest['home']} to {home}")
    if not with_keys:
        log(_keyless_note())
    return manifest


def _keyless_note() -> str:
    """What an instance restored from an archive without keys needs, in a sentence or two."""
    from django.apps import apps

    stored = apps.get_model("trainer", "Repository").objects.exclude(credential="").count()
    note = (
        "keys: the backup carries none (made with --without-keys); this instance keeps its own secret_key "
        "and engine_secret, and admins sign in again."
    )
    if stored:
        note += (
            f" {stored} repositories have stored git credentials, encrypted with the original instance's "
            "credential key: before starting Hearth, put that instance's secret_key file into HEARTH_HOME "
            "(or set HEARTH_CREDENTIAL_KEY, or HEARTH_SECRET_KEY, to the value it had), or enter those "
            "credentials again."
        )
    return note
