"""The offline bundle's scripts and systemd units (packaging/ is a folder of scripts, not a package)."""

from __future__ import annotations

import configparser
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
