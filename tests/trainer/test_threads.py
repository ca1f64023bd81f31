"""Evaluation, the export checks, quantization and the engine size their threads to the process's CPU
set: a worker pinned to half the cores must not start a pool as wide as the machine beside the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

# Pinned to one core, each code path runs against spies that record the thread counts llama.cpp (and
# torch) would have received, then stop it before any model is read.
SPY = r"""
import ctypes, json, os, sys
import django
django.setup()
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from pathlib import Path
import llama_cpp, torch

seen = {}

class Stop(RuntimeError):
    pass

def llama_spy(name):
    def spy(*args, **kwargs):
        seen[name] = [kwargs.get("n_threads"), kwargs.get("n_threads_batch")]
        raise Stop("spy")
    return spy

def attempt(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception:
        pass

gguf = Path(sys.argv[1])
gguf.write_bytes(b"GGUF" + bytes(60))

from trainer.evaluation import harness
from trainer.export import agreement
from trainer.tools import gguf as export_gguf
from inference.engine.batched import BatchedModel
from appliance.cpusets import usable_cpu_count

llama_cpp.Llama = llama_spy("evaluation")
attempt(harness._llama, gguf, n_ctx=64)
llama_cpp.Llama = llama_spy("agreement")
attempt(agreement.gguf_top1_agreement, gguf, [1, 2], None)
llama_cpp.Llama = llama_spy("verify")
attempt(export_gguf.gguf_verify, gguf, probe_text="x")
llama_cpp.Llama = llama_spy("engine")
attempt(BatchedModel, str(gguf), None, seqs=1, n_ctx=64, n_threads=usable_cpu_count())

def quantize(src, dst, params):
    seen["quantize"] = [params._obj.nthread]
    return 1
llama_cpp.llama_model_quantize = quantize
attempt(export_gguf.gguf_quantize, gguf, gguf.with_name("q.gguf"), "q8_0")

def set_num_threads(n):
    seen["torch"] = [n]
    raise Stop("spy")
torch.set_num_threads = set_num_threads
attempt(agreement.reference_top1, gguf.parent, ["x"])

print(json.dumps(seen))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a second core to leave out")
def test_every_thread_pool_fits_a_one_core_cpu_set(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SPY, str(tmp_path / "model.gguf")],
        cwd=django_settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "appliance.settings",
            "HEARTH_HOME": str(tmp_path / "instance"),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {
        "evaluation": [1, 1],
        "agreement": [1, 1],
        "verify": [1, 1],
        "engine": [1, 1],
        "quantize": [1],
        "torch": [1],
    }
