"""Fixtures shared by the admin's page tests."""

from __future__ import annotations

import pytest

# What the gate says of a version it kept (the decision stored on its evaluation report).
NOT_PROMOTED = (
    "Not promoted: the custom model (tuned) completed 37 of 300 held-out lines exactly, the base model "
    "(served now) 30; 12 lines got better and 5 worse — too close to call."
)


@pytest.fixture
def make_version(tmp_path):
    """A candidate version with a GGUF on disk, gated as told, with an evaluation report."""
    from trainer.models import BaseModel, Dataset, EvaluationReport, ModelVersion, TrainingRun

    base = BaseModel.objects.create(slug="tiny", display_name="Tiny", status="ready")
    dataset = Dataset.objects.create(status="ready")

    def make(*, gate_passed: bool | None, metrics: dict | None = None, status: str = "candidate"):
        run = TrainingRun.objects.create(base=base, dataset=dataset, status="succeeded")
        folder = tmp_path / f"version-{run.pk}"
        folder.mkdir()
        (folder / "model.gguf").write_bytes(b"GGUF")
        version = ModelVersion.objects.create(
            base=base,
            run=run,
            status=status,
            gate_passed=gate_passed,
            path=str(folder),
            gguf_path=str(folder / "model.gguf"),
            served_arm="tuned",
        )
        if metrics is not None:
            EvaluationReport.objects.create(
                dataset=dataset,
                version=version,
                status="done",
                mode="prefix",
                metrics=metrics,
                decision=("Promoted: the custom model won." if gate_passed else NOT_PROMOTED)
                + "\nStatistics: tuned against base",
            )
        return version

    return make
