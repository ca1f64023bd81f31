"""The installed llama.cpp is the build Hearth makes (packaging/llama-wheel.sh)."""

import os
import subprocess
from pathlib import Path

import pytest

from appliance.llm.runtime import llama_amx_built

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.environ.get("HEARTH_LLAMA_AMX") == "1", reason="AMX kernels asked for")
def test_llama_cpp_is_built_without_its_amx_kernels():
    # With them, the first decode crashed the process on a Sapphire Rapids class host.
    assert not llama_amx_built()


def _cmake_args(env: dict) -> str:
    script = ROOT / "packaging" / "llama-wheel.sh"
    return subprocess.run(
        ["bash", str(script), "--cmake-args"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_build_arguments_leave_amx_out_and_keep_the_operators_own():
    env = {**os.environ, "CMAKE_ARGS": "-DGGML_CUDA=on"}
    env.pop("HEARTH_LLAMA_AMX", None)
    out = _cmake_args(env)
    assert "-mno-amx-int8" in out and out.endswith("-DGGML_CUDA=on")
    assert _cmake_args({**env, "HEARTH_LLAMA_AMX": "1"}) == "-DGGML_CUDA=on"
