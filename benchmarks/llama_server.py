"""llama.cpp's own `llama-server`, the yardstick of `bench_serving.py --series llama-server`.

Built once from the llama.cpp source that the installed llama-cpp-python vendors (its source
distribution, fetched with pip from the package index the install used), so both sides run the
same kernels: it is configured with the CMake arguments of Hearth's own llama-cpp-python build
(`packaging/llama-wheel.sh --cmake-args`: no AMX kernels, then `CMAKE_ARGS`, which a CUDA host sets to
`-DGGML_CUDA=on`). Benchmark-only: nothing in Hearth runs it. The binary is cached in
`HEARTH_BENCH_CACHE` (default `~/.cache/hearth`), one per llama-cpp-python version and set of
arguments; the build takes about 10 minutes on two cores.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

# Off: a web UI (downloaded, or built with npm), HTTPS and curl, none of which a loopback benchmark needs.
CMAKE_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
]


class BuildError(RuntimeError):
    """llama-server could not be built; the message says which step failed and where its log is."""


def cmake_args() -> list[str]:
    """The CMake arguments Hearth builds llama-cpp-python with (packaging/llama-wheel.sh)."""
    script = Path(__file__).resolve().parent.parent / "packaging" / "llama-wheel.sh"
    out = subprocess.run(["bash", str(script), "--cmake-args"], capture_output=True, text=True, check=True)
    return shlex.split(out.stdout)


def cache_dir() -> Path:
    root = os.environ.get("HEARTH_BENCH_CACHE") or Path.home() / ".cache" / "hearth"
    key = hashlib.sha256(shlex.join(cmake_args()).encode()).hexdigest()[:12]
    return Path(root) / f"llama-server-{importlib.metadata.version('llama-cpp-python')}-{key}"


def _run(step: str, args: list[str], log: Path, cwd: Path | None = None) -> None:
    with log.open("ab") as out:
        out.write(f"$ {shlex.join(args)}\n".encode())
        out.flush()
        rc = subprocess.run(args, check=False, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise BuildError(f"{step} failed (exit {rc}); see {log}")


def _vendored_source(sdist: Path, dest: Path) -> Path:
    """Extract only the vendored llama.cpp tree of the source distribution; returns its folder."""
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in f"/{m.name}"]
        if not members:
            raise BuildError(f"{sdist.name} holds no vendor/llama.cpp folder.")
        tar.extractall(dest, members=members, filter="data")
    found = sorted(dest.glob("*/vendor/llama.cpp/CMakeLists.txt"))
    if not found:
        raise BuildError(f"{sdist.name} holds no vendor/llama.cpp/CMakeLists.txt.")
    return found[0].parent


def llama_server_binary(log: Callable[[str], None] = print) -> Path:
    """The cached `llama-server` of the installed llama-cpp-python's version, built if missing."""
    version = importlib.metadata.version("llama-cpp-python")
    cache = cache_dir()
    binary = cache / "llama-server"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    build_log = cache / "build.log"
    build_log.write_bytes(b"")
    # The source and build folders live in the cache until the build succeeds: a build that was
    # stopped resumes where it stopped (ninja and make redo only what is missing).
    work = cache / "work"
    work.mkdir(exist_ok=True)
    sdists = sorted(work.glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        log(f"fetching the llama-cpp-python {version} source distribution (pip download)")
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        _run("pip download", [*pip, f"llama-cpp-python=={version}", "-d", str(work)], build_log)
        sdists = sorted(work.glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        raise BuildError(f"pip did not download a llama-cpp-python {version} source distribution.")
    if not (work / "src").is_dir():
        shutil.rmtree(work / "src.partial", ignore_errors=True)
        _vendored_source(sdists[0], work / "src.partial")
        (work / "src.partial").replace(work / "src")  # a stopped extraction is redone whole
    source = next((work / "src").glob("*/vendor/llama.cpp"))
    build = work / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    extra = cmake_args()
    log(f"building llama-server in {build} (about 10 min on two cores; log: {build_log})")
    configure = ["cmake", "-S", str(source), "-B", str(build), *generator, *CMAKE_OPTIONS, *extra]
    _run("cmake configure", configure, build_log)
    jobs = str(os.cpu_count() or 2)
    _run("cmake build", ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], build_log)
    built = build / "bin" / "llama-server"
    if not built.is_file():
        raise BuildError(f"the build finished without {built.name}; see {build_log}")
    partial = binary.with_suffix(".partial")
    shutil.copy2(built, partial)
    partial.replace(binary)  # atomic: a stopped copy never leaves a half-written binary
    shutil.rmtree(work, ignore_errors=True)
    return binary


if __name__ == "__main__":
    print(llama_server_binary())
