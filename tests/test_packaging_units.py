"""The offline bundle's scripts and systemd units (packaging/ is a folder of scripts, not a package)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
UNITS = {"hearth-web": "web", "hearth-worker": "qcluster", "hearth-engine": "inference_serve"}


@pytest.fixture
def rendered(tmp_path) -> Path:
    prefix, home, out = tmp_path / "prefix", tmp_path / "home", tmp_path / "units"
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "etc").mkdir()
    (prefix / "etc" / "hearth.env").write_text(f"HEARTH_HOME={home}\n")
    admin = prefix / "venv" / "bin" / "django-admin"
    admin.write_text("#!/bin/sh\nexit 0\n")
    admin.chmod(0o755)
    home.mkdir()
    subprocess.run(
        [str(PACKAGING / "render-units.sh"), str(prefix), str(home), "root", "root", str(out)], check=True
    )
    return out


def test_units_render_with_the_install_paths(rendered, tmp_path):
    for unit, command in UNITS.items():
        text = (rendered / f"{unit}.service").read_text()
        assert "@" not in text.replace("multi-user.target", "")
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read_string(text)
        service = parser["Service"]
        assert service["ExecStart"] == f"{tmp_path}/prefix/venv/bin/django-admin {command}"
        assert service["Restart"] == "on-failure"
        assert service["EnvironmentFile"] == f"{tmp_path}/prefix/etc/hearth.env"
        assert service["UMask"] == "0077"
        assert service["ReadWritePaths"] == f"{tmp_path}/home"
        assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_units_pass_systemd_analyze_verify(rendered):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    units = [str(rendered / f"{unit}.service") for unit in UNITS]
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    noise = ("Failed to connect to bus", "No such file or directory", "Cannot access")
    if proc.returncode != 0 and any(n in proc.stderr for n in noise) and "hearth-" not in proc.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    problems = [line for line in proc.stderr.splitlines() if "hearth-" in line]
    assert problems == [], problems


@pytest.mark.parametrize(
    "script", ["build-bundle.sh", "install.sh", "uninstall.sh", "render-units.sh", "test-offline.sh"]
)
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(PACKAGING / script)], check=True)


def test_packaging_is_not_an_importable_package():
    """A top-level `packaging` package would shadow the third-party library pip and transformers use."""
    assert not (PACKAGING / "__init__.py").exists()
    import packaging.version

    assert "site-packages" in packaging.version.__file__


def test_install_refuses_a_damaged_bundle(tmp_path):
    bundle = tmp_path / "hearth-0.0.0"
    bundle.mkdir()
    shutil.copy(PACKAGING / "install.sh", bundle / "install.sh")
    (bundle / "bundle.json").write_text('{\n  "version": "0.0.0",\n  "python": "3.11"\n}\n')
    (bundle / "payload").write_text("original")
    subprocess.run("sha256sum bundle.json payload > SHA256SUMS", shell=True, cwd=bundle, check=True)
    (bundle / "payload").write_text("altered")
    proc = subprocess.run(
        [
            "bash",
            str(bundle / "install.sh"),
            "--prefix",
            str(tmp_path / "p"),
            "--home",
            str(tmp_path / "h"),
            "--no-services",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0 and "checksum mismatch" in proc.stderr
    assert not (tmp_path / "p" / "venv").exists()


# --- install.sh and uninstall.sh on directories that are not theirs ---------------------------------

# A stand-in for the bundle's Python: `-c` runs the real one (the installer's version check); `-m venv`
# makes a small venv whose bin/python is a symlink to this script and which holds links out of the
# tree (as a real venv's bin/python is); everything else (pip, the converter) does nothing.
FAKE_PYTHON = """#!/bin/bash
if [ "$1" = -c ]; then exec {real} "$@"; fi
if [ "$1 $2" = "-m venv" ]; then
    mkdir -p "$3/bin" "$3/lib/site-packages" "$3/lib/site-packages/pkg/__pycache__"  # pip compiles at install
    ln -s {fake} "$3/bin/python"
    ln -s {outside}/secret "$3/lib/site-packages/outside-link"
    ln -s {outside} "$3/lib64"
    printf '#!/bin/sh\\n[ "$1" != migrate ] || {{ umask 077; echo key > "$HEARTH_HOME/secret_key"; }}\\n' \\
        > "$3/bin/django-admin"
    chmod 0755 "$3/bin/django-admin"
fi
exit 0
"""


def _fake_bundle(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An unpacked bundle that install.sh accepts, with a stand-in Python; and a directory outside
    every install (a private file in it, owned by nobody where the tests run as root)."""
    import sys

    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    (outside / "secret").write_text("not Hearth's\n")
    (outside / "secret").chmod(0o600)
    bundle = tmp_path / "bundle"
    (bundle / "static").mkdir(parents=True)
    (bundle / "wheelhouse").mkdir()
    (bundle / "converter" / "llama.cpp-0").mkdir(parents=True)
    (bundle / "converter" / "llama.cpp-0" / "convert.py").write_text("")
    (bundle / "static" / "app.css").write_text("body {}\n")
    (bundle / "README.md").write_text("# Hearth\n")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (bundle / "bundle.json").write_text(f'{{\n  "version": "0.0.0",\n  "python": "{version}"\n}}\n')
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy(PACKAGING / script, bundle / script)
    subprocess.run(
        "find . -type f ! -name SHA256SUMS -printf '%P\\0' | xargs -0 sha256sum > SHA256SUMS",
        shell=True,
        cwd=bundle,
        check=True,
    )
    fake = tmp_path / "python-stand-in"
    fake.write_text(FAKE_PYTHON.format(real=sys.executable, fake=fake, outside=outside))
    fake.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(outside, 65534, 65534)
        os.chown(outside / "secret", 65534, 65534)
    return bundle, fake, outside


def _install(bundle: Path, fake: Path, prefix: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "bash",
            str(bundle / "install.sh"),
            *("--prefix", str(prefix), "--home", str(home)),
            *("--python", str(fake), "--no-services", "--no-base-model", "--hostname", "hearth.test"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _uninstall(prefix: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(PACKAGING / "uninstall.sh"), "--prefix", str(prefix), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _tree(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path below `root` (itself included), never followed: mode, owner, group, link target."""
    found = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        found[str(path.relative_to(root))] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            os.readlink(path) if path.is_symlink() else "",
        )
    return found


@pytest.fixture
def opt_like(tmp_path) -> Path:
    """A directory such as /opt: another program's files, a private one among them, and a symlink."""
    opt = tmp_path / "opt"
    (opt / "vendor" / "bin").mkdir(parents=True)
    (opt / "vendor" / "bin" / "tool").write_text("#!/bin/sh\n")
    (opt / "private.key").write_text("secret\n")
    (opt / "private.key").chmod(0o600)
    (opt / "etc-link").symlink_to("/etc")
    opt.chmod(0o750)
    return opt


@pytest.mark.parametrize("role", ["prefix", "home"])
def test_install_refuses_a_directory_holding_other_files_and_leaves_it_untouched(tmp_path, opt_like, role):
    bundle, fake, _ = _fake_bundle(tmp_path)
    before = _tree(opt_like)
    dirs = {"prefix": tmp_path / "new-prefix", "home": tmp_path / "new-home", role: opt_like}
    proc = _install(bundle, fake, dirs["prefix"], dirs["home"])
    assert proc.returncode != 0 and "not a Hearth install" in proc.stderr, proc.stderr
    assert _tree(opt_like) == before
    other = dirs["home" if role == "prefix" else "prefix"]
    assert not other.exists(), "the installer created a directory before refusing"


def test_uninstall_refuses_a_directory_that_is_not_an_install(opt_like):
    before = _tree(opt_like)
    proc = _uninstall(opt_like, "--purge")
    assert proc.returncode != 0 and "no Hearth install" in proc.stderr
    assert _tree(opt_like) == before


def test_install_and_uninstall_touch_only_their_own_files_never_through_a_symlink(tmp_path):
    bundle, fake, outside = _fake_bundle(tmp_path)
    outside_before, fake_mode = _tree(outside), fake.stat().st_mode
    prefix, home = tmp_path / "prefix", tmp_path / "home"
    proc = _install(bundle, fake, prefix, home)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # What the installer wrote is readable by the services; the links out of the tree were not followed.
    assert _tree(outside) == outside_before and fake.stat().st_mode == fake_mode
    assert (prefix / "venv" / "lib64").is_symlink() and (prefix / "venv" / "bin" / "python").is_symlink()
    assert (prefix / "static" / "app.css").stat().st_mode & 0o777 == 0o644
    assert (prefix / "venv" / "bin" / "django-admin").stat().st_mode & 0o777 == 0o755
    assert (prefix / "etc" / "hearth.env").stat().st_mode & 0o777 == 0o640
    assert home.stat().st_mode & 0o777 == 0o700 and (home / ".hearth-instance").is_file()
    manifest = (prefix / ".hearth-manifest").read_text().splitlines()
    assert {"f venv/lib64", "f venv/bin/python", "d venv/lib", "f bin/hearth"} <= set(manifest)

    # An upgrade-free reinstall is refused (the install is Hearth's, but it is there).
    again = _install(bundle, fake, prefix, home)
    assert again.returncode != 0 and "already holds an install" in again.stderr

    # Someone else's files in the install, a directory of Hearth's swapped for a link out of the tree,
    # and a link in the instance directory: uninstall --purge removes Hearth's files only.
    (prefix / "notes.txt").write_text("mine\n")
    (prefix / "venv" / "lib" / "site-packages" / "__pycache__").mkdir()  # Python's, after the install
    (prefix / "venv" / "lib" / "site-packages" / "__pycache__" / "hearth.cpython-311.pyc").write_bytes(b"")
    (prefix / "etc" / "local.conf").write_text("mine\n")
    shutil.rmtree(prefix / "static")
    (prefix / "static").symlink_to(outside)
    (home / "to-outside").symlink_to(outside / "secret")
    proc = _uninstall(prefix, "--purge")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _tree(outside) == outside_before and fake.stat().st_mode == fake_mode
    assert sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*")) == [
        "etc",
        "etc/local.conf",
        "notes.txt",
        "static",
    ]
    assert (prefix / "static").is_symlink() and "notes.txt" in proc.stdout
    assert not home.exists()  # the installer created it: --purge deletes it, and only it


def test_uninstall_removes_a_prefix_it_created_and_keeps_one_it_was_given(tmp_path):
    bundle, fake, _ = _fake_bundle(tmp_path)
    given = tmp_path / "given"
    given.mkdir()
    for prefix, home in ((tmp_path / "made" / "hearth", tmp_path / "h1"), (given, tmp_path / "h2")):
        proc = _install(bundle, fake, prefix, home)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _uninstall(prefix).returncode == 0
        assert home.is_dir()  # kept without --purge
    assert not (tmp_path / "made" / "hearth").exists() and (tmp_path / "made").is_dir()
    assert given.is_dir() and list(given.iterdir()) == []
