"""Dataset rows: build one from registered repositories at their current SHAs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from appliance import paths
from appliance.errors import DatasetError, HearthError
from trainer.datasets.builder import DatasetOptions, SourceRepo, dataset_build_files
from trainer.models import Dataset, Repository

logger = logging.getLogger(__name__)


def dataset_build(
    *,
    repositories: list[Repository],
    options: DatasetOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    options = options or DatasetOptions()
    not_ready = [r.name for r in repositories if r.status != Repository.Status.READY or not r.head_sha]
    if not repositories or not_ready:
        raise DatasetError(f"Repositories not synced yet: {', '.join(not_ready) or 'none given'}.")
    dataset = Dataset.objects.create(options=asdict(options), commits={r.name: r.head_sha for r in repositories})
    dataset.repositories.set(repositories)
    dataset.transition(Dataset.Status.BUILDING)
    out = paths.dataset_dir(dataset.pk)
    sources = [SourceRepo(r.name, Path(r.mirror_path), r.head_sha) for r in repositories]
    try:
        result = dataset_build_files(sources, out, options, progress)
    except HearthError as exc:
        dataset.log_line(f"failed: {exc}")
        dataset.transition(Dataset.Status.FAILED, reason=str(exc))
        raise
    dataset.path = str(out)
    dataset.report = result.report()
    dataset.train_files, dataset.heldout_files = result.train_files, result.heldout_files
    dataset.train_bytes = result.train_bytes
    dataset.manifest = json.loads((out / "manifest.json").read_text())
    dataset.save()
    dataset.transition(Dataset.Status.READY)
    dataset.log_line(
        f"built: {result.train_files} training files, {result.heldout_files} held-out, "
        f"{sum(result.skipped.values())} skipped in {result.seconds:.1f} s"
    )
    return dataset
