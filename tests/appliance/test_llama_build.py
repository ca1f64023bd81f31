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


def test_build_arguments_leave_amx_out_and_keep_the_operators_own():
    env = {**os.environ, "CMAKE_ARGS": "-DGGML_CUDA=on"}
    env.pop("HEARTH_LLAMA_AMX", None)
    out = subprocess.run(
        ["bash", str(ROOT / "packaging" / "llama-wheel.sh"), "--cmake-args"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-mno-amx-int8" in out and out.strip().endswith("-DGGML_CUDA=on")
    env["HEARTH_LLAMA_AMX"] = "1"
    out = subprocess.run(
        ["bash", str(ROOT / "packaging" / "llama-wheel.sh"), "--cmake-args"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "-DGGML_CUDA=on"
