"""Export: merge the adapter into the full-precision base, convert to GGUF with the pinned
converter, quantize, write FIM keys, verify each file loads, record sha256s."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from appliance.errors import ExportError
from trainer.basemodels.services import fim_token_ids, sha256_file
from trainer.models import ModelVersion

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("q8_0",)


def model_version_export(*, version: ModelVersion, log: Callable[[str], None] = logger.info,
                         quantizations: tuple[str, ...] = QUANTIZATIONS) -> ModelVersion:
    from trainer.export.gguf import gguf_convert, gguf_quantize, gguf_set_fim_tokens, gguf_verify
    from trainer.training.modeling import adapter_merge, tokenizer_load

    run = version.run
    out = Path(version.path)
    timings = {}
    t = time.monotonic()
    merged = out / "merged"
    fmt = adapter_merge(run.base.hf_path, Path(run.adapter_path), merged)
    timings["merge_s"] = round(time.monotonic() - t, 2)
    log(f"merged adapter into the base in {timings['merge_s']} s")

    t = time.monotonic()
    f16 = gguf_convert(merged, out / "model-f16.gguf", outtype="f16", log=log)
    ids = fim_token_ids(tokenizer_load(str(merged)), fmt)
    gguf_set_fim_tokens(f16, ids)
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
    manifest = {
        "stage": "export",
        "base": {"slug": run.base.slug, "manifest_files": run.base.manifest.get("files", {})},
        "run": run.pk,
        "dataset": run.dataset_id,
        "fim_format": fmt.name,
        "fim_token_ids": ids,
        "adapter": {p.name: sha256_file(p) for p in sorted(Path(run.adapter_path).iterdir()) if p.is_file()},
        "merged": {p.name: sha256_file(p) for p in sorted(merged.iterdir()) if p.is_file()},
        "gguf": {name: sha256_file(path) for name, path in files.items()},
        "verify": verified,
        "timings": timings,
        "served_file": served.name,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    version.gguf_path = str(served)
    version.gguf_sha256 = manifest["gguf"][served.name]
    version.fim_format = fmt.name
    version.manifest = manifest
    version.save(update_fields=["gguf_path", "gguf_sha256", "fim_format", "manifest", "updated_at"])
    if not served.exists():
        raise ExportError(f"{served} is missing after quantization.")
    return version


def export_cleanup(version: ModelVersion) -> None:
    """Drop the merged safetensors once GGUFs exist (they are reproducible from base + adapter)."""
    shutil.rmtree(Path(version.path) / "merged", ignore_errors=True)
