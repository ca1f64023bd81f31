"""What a fine-tune of a dataset will take before it starts: its real training tokens (the base's own
tokenizer, the same samples and packing as the run), its optimizer steps, and the minutes that export
and evaluation add afterwards (from the last measured model version of the base)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from trainer.training.config import LoraSettings


def training_tokens(
    *, hf_path: str, train_files: list[dict], settings: LoraSettings, accepted_files: Sequence[dict] = ()
) -> int:
    """The training tokens the run will count: `train` builds exactly these samples (the files', and
    one per accepted completion) and packs them."""
    from appliance import paths
    from trainer.tools.tokenizers import fim_tokens_ensure, tokenizer_load
    from trainer.training.loop import sequences_prepare, training_index_build

    tokenizer = tokenizer_load(hf_path)
    fmt, _ = fim_tokens_ensure(tokenizer)
    eot_id = tokenizer.convert_tokens_to_ids(fmt.eot)
    with tempfile.TemporaryDirectory(dir=paths.private_tmp_dir(), prefix="plan-") as tmp:
        index = training_index_build(Path(tmp), train_files, 0) if settings.context_rate > 0 else None
        _, stats = sequences_prepare(
            train_files, tokenizer, fmt, eot_id, settings, settings.seed, index=index, accepted=accepted_files
        )
    return int(stats["tokens"])


def after_training_s(base) -> tuple[float | None, str]:
    """Seconds of export and evaluation after training, measured on the last model version of `base`
    that got through both, and where the figure comes from in words."""
    from trainer.models import EvaluationReport, ModelVersion

    for version in ModelVersion.objects.filter(base=base).exclude(manifest={}).order_by("-created_at")[:10]:
        export_s = sum(float(v) for v in (version.manifest.get("timings") or {}).values())
        report = (
            EvaluationReport.objects.filter(version=version, status=EvaluationReport.Status.DONE)
            .order_by("-created_at")
            .first()
        )
        if export_s and report is not None:
            return export_s + (report.updated_at - report.created_at).total_seconds(), f"version {version.pk}"
    return None, f"no model version of {base.slug} exported and evaluated yet"
