"""`make bench-export`: Hearth's GGUF export against the raw converter and quantizer run by hand on
the same model, in one run (alternating, best of N). Prints JSON lines {metric, value, goal}."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import django_setup, emit


def hearth_export(hf: Path, out: Path) -> float:
    from trainer.tools.gguf import gguf_convert, gguf_quantize

    t = time.perf_counter()
    f16 = gguf_convert(hf, out / "model-f16.gguf", outtype="f16", log=lambda line: None)
    gguf_quantize(f16, out / "model-q8_0.gguf", "q8_0")
    gguf_quantize(f16, out / "model-q4_k_m.gguf", "q4_k_m")
    return time.perf_counter() - t


def raw_export(hf: Path, out: Path) -> float:
    """What an engineer types by hand: the converter script, then llama.cpp's quantize function."""
    import llama_cpp

    from trainer.tools.converter import SCRIPT, converter_dir

    tool = converter_dir()
    env = {**os.environ, "PYTHONPATH": str(tool / "gguf-py")}
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(tool / SCRIPT),
            str(hf),
            "--outfile",
            str(out / "raw-f16.gguf"),
            "--outtype",
            "f16",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    for name, ftype in (
        ("raw-q8_0.gguf", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0),
        ("raw-q4_k_m.gguf", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M),
    ):
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.nthread = os.cpu_count() or 1
        rc = llama_cpp.llama_model_quantize(
            str(out / "raw-f16.gguf").encode(), str(out / name).encode(), params
        )
        assert rc == 0, f"quantize returned {rc}"
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", choices=["smollm2", "micro"], default="smollm2")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    django_setup()
    if args.base == "micro":
        from trainer.basemodels.services import basemodel_bootstrap

        hf = Path(basemodel_bootstrap(log=lambda m: None).hf_path)
    else:
        from trainer.basemodels.services import basemodel_fetch_default

        hf = Path(basemodel_fetch_default(log=lambda m: None).hf_path)
    ours, raw = [], []
    for i in range(args.repeats):
        # Each side goes first every other time: the one that runs second pays for the writeback
        # of the ~0.5 GB the first one just wrote.
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            if i % 2:
                ours.append(hearth_export(hf, Path(a)))
                raw.append(raw_export(hf, Path(b)))
            else:
                raw.append(raw_export(hf, Path(b)))
                ours.append(hearth_export(hf, Path(a)))
    emit(
        "hearth_export_s",
        round(min(ours), 2),
        "lower is better",
        base=args.base,
        runs=[round(x, 2) for x in ours],
    )
    emit(
        "raw_tools_export_s", round(min(raw), 2), "reference", base=args.base, runs=[round(x, 2) for x in raw]
    )
    emit("export_vs_raw_tools", round(min(ours) / min(raw), 3), "<= 1.10", base=args.base)


if __name__ == "__main__":
    main()
