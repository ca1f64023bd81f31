"""Export: merge the adapter into the full-precision base (a fully fine-tuned run's model folder is
converted as it is), convert to GGUF with the pinned converter, quantize, write FIM keys, verify
each file loads, record sha256s."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from appliance.errors import ExportError
from appliance.paths import sha256_file
from appliance.stages import Stage
from trainer.models import ModelVersion
from trainer.tools.tokenizers import fim_token_ids

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("q8_0", "q4_k_m")


def model_version_export(*, stage: Stage, quantizations: tuple[str, ...] = QUANTIZATIONS) -> ModelVersion:
    """The export part of a model version's stage: the run's output to GGUF, quantized, each file
    checked in llama.cpp, and the stage's manifest (written by the runner's own writer)."""
    from trainer.tools.gguf import (
        gguf_convert,
        gguf_quantize,
        gguf_set_fim_tokens,
        gguf_verify,
    )
    from trainer.tools.tokenizers import tokenizer_load

    version: ModelVersion = stage.row
    log = stage.log
    run = version.run
    out = Path(version.path)
    timings = {}
    full = run_is_full(run)
    merged, fmt = _model_folder(run, out, timings, log)

    t = time.monotonic()
    f16 = gguf_convert(merged, out / "model-f16.gguf", outtype="f16", log=logger.debug)
    fim_ids = fim_token_ids(tokenizer_load(str(merged)), fmt)
    if not fmt.llama_cpp_detects:  # rewriting the file costs seconds on real models: only when needed
        gguf_set_fim_tokens(f16, fim_ids)
    timings["convert_s"] = round(time.monotonic() - t, 2)
    files = {"model-f16.gguf": f16}
    for kind in quantizations:
        t = time.monotonic()
        files[f"model-{kind}.gguf"] = gguf_quantize(f16, out / f"model-{kind}.gguf", kind)
        timings[f"quantize_{kind}_s"] = round(time.monotonic() - t, 2)
    served = files[f"model-{quantizations[0]}.gguf"]
    probe = "def add(a, b):\n    return a + b\n"
    verified = {name: gguf_verify(path, probe_text=probe) for name, path in files.items()}
    log(f"converted and quantized ({', '.join(files)}); all load in llama.cpp")
    probe_ids, agreement = _agreement(run, merged, files, timings, log)
    adapter_gguf = (
        {"unsupported": "a full fine-tune has no adapter"} if full else _adapter_gguf(run, out, log)
    )
    stage.manifest(
        out,
        base={"slug": run.base.slug, "manifest_files": run.base.manifest.get("files", {})},
        run=run.pk,
        dataset=run.dataset_id,
        fim_format=fmt.name,
        fim_token_ids=fim_ids,
        method=run.method,
        adapter={}
        if full
        else {p.name: sha256_file(p) for p in sorted(Path(run.adapter_path).iterdir()) if p.is_file()},
        merged={p.name: sha256_file(p) for p in sorted(merged.iterdir()) if p.is_file()},
        gguf={name: sha256_file(path) for name, path in files.items()},
        verify=verified,
        top1_agreement={"tokens": len(probe_ids), **agreement},
        adapter_gguf=adapter_gguf,
        timings=timings,
        served_file=served.name,
    )
    manifest = stage.manifest_flush()
    version.gguf_path = str(served)
    version.gguf_sha256 = manifest["gguf"][served.name]
    version.fim_format = fmt.name
    version.manifest = manifest
    version.save(update_fields=["gguf_path", "gguf_sha256", "fim_format", "manifest", "updated_at"])
    if not served.exists():
        raise ExportError(f"{served} is missing after quantization.")
    return version


def run_is_full(run) -> bool:
    """A full fine-tune: its run folder holds a whole model, exported without a merge."""
    return (run.method or "").startswith("full")


def _model_folder(run, out: Path, timings: dict, log) -> tuple[Path, object]:
    """The HF folder to convert and its FIM format: the run's own model (full fine-tuning), or the
    adapter merged into the base under `out/merged`."""
    from appliance.llm.fim import fim_format_detect
    from trainer.tools.tokenizers import tokenizer_load
    from trainer.training.modeling import adapter_merge

    if run_is_full(run):
        model = Path(run.adapter_path)
        fmt = fim_format_detect(tokenizer_load(str(model)).get_vocab())
        if fmt is None:
            raise ExportError(
                f"The fine-tuned model in {model.name}/ has no FIM tokens; the run is incomplete."
            )
        log(f"full fine-tune ({run.method}): converting its model folder, no merge")
        return model, fmt
    t = time.monotonic()
    merged = out / "merged"
    fmt = adapter_merge(run.base.hf_path, Path(run.adapter_path), merged)
    timings["merge_s"] = round(time.monotonic() - t, 2)
    log(f"merged adapter into the base in {timings['merge_s']} s")
    return merged, fmt


def _agreement(run, merged: Path, files: dict[str, Path], timings: dict, log) -> tuple[list[int], dict]:
    """Top-1 agreement of each GGUF with the merged model on held-out tokens (what quantization cost)."""
    from trainer.export.agreement import gguf_top1_agreement, reference_top1
    from trainer.tools.dataset_files import dataset_files_read

    t = time.monotonic()
    heldout = [f["text"] for f in dataset_files_read(Path(run.dataset.path), "heldout")]
    probe_ids, reference = reference_top1(merged, heldout)
    agreement = {
        name: round(gguf_top1_agreement(path, probe_ids, reference), 4) for name, path in files.items()
    }
    timings["agreement_s"] = round(time.monotonic() - t, 2)
    log(
        "top-1 agreement with the merged model on held-out tokens: "
        + ", ".join(f"{k} {v:.3f}" for k, v in agreement.items())
    )
    return probe_ids, agreement


def _adapter_gguf(run, out: Path, log) -> dict:
    """The adapter alone as GGUF (llama.cpp can apply it to the base), or why it could not be written."""
    from trainer.tools.gguf import gguf_convert_adapter

    try:
        path = gguf_convert_adapter(
            Path(run.adapter_path), Path(run.base.hf_path), out / "adapter-f16.gguf", log=logger.debug
        )
        return {path.name: sha256_file(path)}
    except ExportError as exc:  # e.g. adapters that also train new token embeddings
        reason = str(exc).splitlines()[0]
        log(f"adapter-only GGUF not written: {reason}")
        return {"unsupported": reason}


def export_cleanup(version: ModelVersion) -> None:
    """Drop the merged safetensors once GGUFs exist (they are reproducible from base + adapter)."""
    shutil.rmtree(Path(version.path) / "merged", ignore_errors=True)
