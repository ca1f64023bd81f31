"""`make gpu-check`: on a CUDA host, train the micro model a few steps with each training method
(full, lora, qlora NF4), export each to GGUF and serve it with llama.cpp on the GPU (n_gpu_layers=-1).
One line per check; exit status 1 when one failed. Without CUDA it says so and exits 0."""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

from _common import code_files, django_setup

METHODS = ("full", "lora", "qlora")


def line(ok: bool, method: str, check: str, detail: str) -> bool:
    print(f"{'ok  ' if ok else 'FAIL'} {method:<6} {check:<9} {detail}", flush=True)
    return ok


def train_one(hf_path: Path, files: list[dict], method: str, out: Path):
    """A few steps with `method`; the trained HF folder (merged for LoRA and QLoRA) and the summary."""
    from trainer.training.config import LoraSettings
    from trainer.training.loop import train
    from trainer.training.modeling import adapter_merge, method_choose

    settings = LoraSettings(
        method=method,
        max_steps=8,
        seq_len=128,
        batch_size=4,
        grad_accum=1,
        warmup_steps=1,
        eval_every_steps=4,
        eval_sequences=4,
        context_rate=0,
    )
    chosen = method_choose(settings.method)
    summary = train(
        hf_path=str(hf_path),
        train_files=files[1:],
        heldout_files=files[:1],
        settings=settings,
        method=chosen,
        out_dir=out,
        log=lambda m: None,
    )
    if chosen.full:
        return out / "model", summary
    adapter_merge(str(hf_path), out / "adapter", out / "merged")
    return out / "merged", summary


def check_method(hf_path: Path, files: list[dict], method: str, work: Path) -> bool:
    import llama_cpp

    from trainer.tools.gguf import gguf_convert

    try:
        t = time.monotonic()
        folder, summary = train_one(hf_path, files, method, work / method)
        evals = [h["eval_loss"] for h in summary["eval_history"]]
        ok = line(
            summary["device"] == "cuda",
            method,
            "train",
            f"{summary['method']} on {summary['device']}: {summary['steps']} steps, held-out "
            f"{evals[0]:.3f} → {evals[-1]:.3f}, {summary['tokens_per_s']:,.0f} tok/s, "
            f"{time.monotonic() - t:.1f} s",
        )
        gguf = gguf_convert(folder, work / f"{method}.gguf", outtype="f16", log=lambda m: None)
        ok &= line(
            True,
            method,
            "export",
            f"{gguf.name}, {gguf.stat().st_size / 1e6:.1f} MB, no merge: {method == 'full'}",
        )
        t = time.monotonic()
        llm = llama_cpp.Llama(model_path=str(gguf), n_gpu_layers=-1, n_ctx=256, verbose=False)
        text = llm.create_completion("def main(", max_tokens=16, temperature=0)["choices"][0]["text"]
        offload = bool(llama_cpp.llama_supports_gpu_offload())
        return ok & line(
            offload,
            method,
            "serve",
            f"llama.cpp n_gpu_layers=-1 (GPU offload {'supported' if offload else 'NOT supported by this build'}), "
            f"{len(text)} chars in {time.monotonic() - t:.2f} s",
        )
    except Exception as exc:  # noqa: BLE001 - a check that fails says why; the others still run
        traceback.print_exc(file=sys.stderr)
        return line(False, method, "error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA (torch {torch.__version__}): GPU check skipped")
        return 0
    home = django_setup()
    from trainer.basemodels.bootstrap import micro_model_build

    print(f"CUDA: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    hf_path = home / "micro"
    micro_model_build(hf_path, corpus_bytes=200_000, vocab_size=512)
    files = code_files(200_000)
    results = [check_method(hf_path, files, method, home / "gpu-check") for method in METHODS]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
