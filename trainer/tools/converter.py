"""Install llama.cpp's HF→GGUF converter, pinned to the installed llama-cpp-python, without a network.

The converter that matches the serving engine ships inside llama-cpp-python's source distribution
(`vendor/llama.cpp/`). At install time we take that sdist from pip's cache (or from a file in an
offline bundle) and unpack only the converter into `<dest>/llama.cpp-<version>/`.

    python -m trainer.tools.converter install [--dest DIR] [--sdist PATH | --from DIR]

(The bundle builder in `packaging/` is a folder of scripts, not a Python package: a top-level
package named `packaging` would shadow the third-party library that transformers and pip import.)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from appliance.errors import ExportError
from appliance.paths import sha256_file

DISTRIBUTION = "llama-cpp-python"
SCRIPT = "convert_hf_to_gguf.py"
MANIFEST = "converter.json"
# What convert_hf_to_gguf.py needs beside itself: its model classes (`conversion/`), the gguf-py
# it was written against (newer than the PyPI gguf of the same version number), and the chat
# templates a few architectures read from `models/templates/`.
LORA_SCRIPT = "convert_lora_to_gguf.py"
_FILES = (SCRIPT, LORA_SCRIPT, "LICENSE")
_DIRS = ("conversion/", "gguf-py/gguf/", "models/templates/")
_GGUF_PY_FILES = ("gguf-py/LICENSE", "gguf-py/pyproject.toml")
_VENDOR = "vendor/llama.cpp/"
_PIP_TIMEOUT_S = 900


def default_dest() -> Path:
    """Where the converter goes unless told otherwise: beside the interpreter's environment."""
    return Path(sys.prefix) / "share" / "hearth" / "converter"


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version (the engine the GGUF must match)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ExportError(f"{DISTRIBUTION} is not installed in this environment ({sys.prefix}).") from exc


def _installed_at(target: Path, version: str) -> bool:
    """True if `target` holds a complete converter for `version` (manifest and script agree)."""
    try:
        meta = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    script = target / SCRIPT
    return (
        meta.get("version") == version
        and script.is_file()
        and all((target / name).is_file() for name in _FILES)
        and (target / "gguf-py" / "gguf" / "__init__.py").is_file()
        and meta.get("script_sha256") == sha256_file(script)
    )


def converter_dir(dest: Path | None = None) -> Path:
    """The unpacked converter for the installed llama-cpp-python; ExportError if it is missing."""
    version = llama_cpp_version()
    target = (dest or default_dest()) / f"llama.cpp-{version}"
    if not _installed_at(target, version):
        raise ExportError(
            f"The GGUF converter for llama-cpp-python {version} is not installed (looked in {target}). "
            "Run `make install`, or `python -m trainer.tools.converter install`."
        )
    return target


def _download_sdist(version: str, into: Path, log: Callable[[str], None]) -> Path:
    """Fetch the sdist with pip; on a box that built llama-cpp-python, pip's cache serves it offline."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"{DISTRIBUTION}=={version}",
        "-d",
        str(into),
    ]
    log(f"Fetching the {DISTRIBUTION} {version} source distribution with pip")
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ExportError(
            f"pip could not fetch {DISTRIBUTION}=={version} within {_PIP_TIMEOUT_S} s. "
            "Offline, pass the sdist from the bundle with --sdist PATH."
        ) from exc
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ExportError(
            f"pip could not fetch {DISTRIBUTION}=={version} (exit {proc.returncode}). "
            f"Offline, pass the sdist from the bundle with --sdist PATH.\n{tail}"
        )
    return found[0]


def _wanted(rel: str) -> bool:
    if "__pycache__" in rel or rel.endswith(".pyc"):
        return False
    return rel in _FILES or rel in _GGUF_PY_FILES or rel.startswith(_DIRS)


def _extract(sdist: Path, version: str, into: Path) -> int:
    """Unpack the converter files of `sdist` into `into`, stripping `<top>/vendor/llama.cpp/`."""
    count = 0
    try:
        with tarfile.open(sdist, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                # <top>/vendor/llama.cpp/<rel>; <top> is llama_cpp_python-<version>
                if len(parts) < 4 or "/".join(parts[1:3]) + "/" != _VENDOR or not member.isfile():
                    continue
                if not parts[0].endswith(f"-{version}"):
                    raise ExportError(f"{sdist.name} is not the {DISTRIBUTION} {version} sdist.")
                rel = "/".join(parts[3:])
                if not _wanted(rel):
                    continue
                src = tar.extractfile(member)
                out = into.joinpath(*parts[3:])
                out.parent.mkdir(parents=True, exist_ok=True)
                with out.open("wb") as fh:
                    shutil.copyfileobj(src, fh)
                count += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ExportError(f"Could not read {sdist}: {exc}") from exc
    if not (into / SCRIPT).is_file():
        raise ExportError(f"{sdist.name} does not contain {_VENDOR}{SCRIPT}.")
    return count


def converter_install(
    *, dest: Path | None = None, sdist: Path | None = None, log: Callable[[str], None] = print
) -> Path:
    """Unpack the converter for the installed llama-cpp-python into `dest`; a no-op if already there."""
    version = llama_cpp_version()
    dest = dest or default_dest()
    target = dest / f"llama.cpp-{version}"
    if _installed_at(target, version):
        log(f"GGUF converter for llama-cpp-python {version} already installed in {target}")
        return target

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".converter-", dir=dest) as tmp:
        tmp_path = Path(tmp)
        if sdist is None:
            (tmp_path / "dl").mkdir()
            sdist = _download_sdist(version, tmp_path / "dl", log)
        sdist = Path(sdist)
        staged = tmp_path / "staged"
        count = _extract(sdist, version, staged)
        manifest = {
            "version": version,
            "source": sdist.name,
            "source_sha256": sha256_file(sdist),
            "script": SCRIPT,
            "script_sha256": sha256_file(staged / SCRIPT),
            "files": count,
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if target.exists():  # an incomplete or foreign copy: replace it
            shutil.rmtree(target)
        staged.rename(target)  # same filesystem: readers never see a half-unpacked converter
    log(f"Installed GGUF converter for llama-cpp-python {version} ({count} files) in {target}")
    return target


def converter_install_from(
    source: Path, *, dest: Path | None = None, log: Callable[[str], None] = print
) -> Path:
    """Copy an already unpacked converter (the offline bundle's `converter/llama.cpp-<v>/`) into
    `dest`, after checking it is complete and made for the installed llama-cpp-python."""
    version = llama_cpp_version()
    source = Path(source)
    if not _installed_at(source, version):
        raise ExportError(
            f"{source} is not a complete GGUF converter for llama-cpp-python {version} "
            f"(its {MANIFEST} and {SCRIPT} must agree)."
        )
    dest = dest or default_dest()
    target = dest / f"llama.cpp-{version}"
    if _installed_at(target, version):
        log(f"GGUF converter for llama-cpp-python {version} already installed in {target}")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".converter-", dir=dest) as tmp:
        staged = Path(tmp) / "staged"
        shutil.copytree(source, staged)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    log(f"Installed GGUF converter for llama-cpp-python {version} from {source} in {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.tools.converter", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="unpack the converter matching the installed llama-cpp-python")
    install.add_argument("--dest", type=Path, help=f"parent directory (default: {default_dest()})")
    install.add_argument("--sdist", type=Path, help="use this llama-cpp-python sdist instead of asking pip")
    install.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        help="copy this unpacked converter (an offline bundle's converter/llama.cpp-<version>)",
    )
    where = sub.add_parser("path", help="print the installed converter directory, or fail")
    where.add_argument("--dest", type=Path, help=f"parent directory (default: {default_dest()})")
    args = parser.parse_args(argv)
    try:
        if args.command == "install" and args.from_dir:
            converter_install_from(args.from_dir, dest=args.dest)
        elif args.command == "install":
            converter_install(dest=args.dest, sdist=args.sdist)
        else:
            print(converter_dir(args.dest))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
