#!/usr/bin/env bash
# Build (once) and print the path of the llama-cpp-python wheel that Hearth installs and bundles.
#
#   packaging/llama-wheel.sh PYTHON          the wheel's path (the version pyproject.toml pins), built
#                                            into the cache when missing
#   packaging/llama-wheel.sh --cmake-args    the CMake arguments that build uses
#
# llama.cpp is compiled for this machine's CPU (GGML_NATIVE), but without its AMX kernels: with them,
# the llama.cpp that llama-cpp-python 0.3.36 vendors crashed (SIGSEGV in ggml_backend_amx_mul_mat) on
# the first decode on a Sapphire Rapids class host, for every model tried (an open llama.cpp bug that
# depends on the machine). HEARTH_LLAMA_AMX=1 builds them back in. CMAKE_ARGS (e.g. -DGGML_CUDA=on)
# comes after Hearth's own arguments.
#
# The wheel is cached per version and per set of arguments in HEARTH_BUILD_CACHE (default
# ~/.cache/hearth/wheels): pip's own wheel cache ignores CMAKE_ARGS, so it could hand back a wheel
# built with other flags.
set -euo pipefail

cmake_args() {
    local args=""
    local no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    # Only where the compiler knows the flags: x86-64 with GCC 11+ or Clang 12+ (an ARM compiler
    # refuses them, and has no AMX to leave out).
    if [ "${HEARTH_LLAMA_AMX:-0}" != 1 ] &&
        echo 'int x;' | "${CC:-cc}" $no_amx -x c -c -o /dev/null - 2>/dev/null; then
        args="'-DCMAKE_C_FLAGS=$no_amx' '-DCMAKE_CXX_FLAGS=$no_amx'"
    fi
    printf '%s\n' "$args${args:+${CMAKE_ARGS:+ }}${CMAKE_ARGS:-}"
}

if [ "${1:-}" = "--cmake-args" ]; then
    cmake_args
    exit 0
fi
if [ $# -ne 1 ]; then
    echo "usage: $0 PYTHON | --cmake-args" >&2
    exit 2
fi
PY=$1
VERSION=$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' "$(dirname "$0")/../pyproject.toml")
[ -n "$VERSION" ] || { echo "pyproject.toml pins no llama-cpp-python version" >&2; exit 1; }
ARGS=$(cmake_args)
KEY=$(printf '%s' "$ARGS" | sha256sum | cut -c1-12)
DIR=${HEARTH_BUILD_CACHE:-$HOME/.cache/hearth/wheels}/llama-cpp-python-$VERSION-$KEY
WHEEL=$(ls "$DIR"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$WHEEL" ]; then
    mkdir -p "$DIR"
    echo "Building llama-cpp-python $VERSION (llama.cpp compiles from source: ~8 min on 2 cores; CMAKE_ARGS=$ARGS)" >&2
    printf '%s\n' "$ARGS" > "$DIR/cmake-args.txt"
    CMAKE_ARGS=$ARGS CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
        "$PY" -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
        -w "$DIR.partial" "llama-cpp-python==$VERSION" >&2
    mv "$DIR.partial"/llama_cpp_python-"$VERSION"-*.whl "$DIR/"
    rm -rf "$DIR.partial"
    WHEEL=$(ls "$DIR"/llama_cpp_python-"$VERSION"-*.whl | head -1)
fi
printf '%s\n' "$WHEEL"
