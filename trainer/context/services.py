"""The code index of a dataset: built with the dataset, read by evaluation, training and serving."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from appliance import paths
from trainer.context.index import ContextIndex, index_build

logger = logging.getLogger(__name__)


def context_index_build(*, dataset_dir: Path, dataset_pk: int) -> dict:
    """Index the dataset's training files (never its held-out ones). Returns what the dataset's
    manifest records of the index (the dataset stage writes it)."""
    from trainer.tools.dataset_files import dataset_files_read

    target = paths.context_index_path(dataset_pk)
    stats = index_build(target, dataset_files_read(dataset_dir, "train"))
    entry = {"path": target.name, "sha256": paths.sha256_file(target), "split": "train", **stats}
    logger.info(
        "context index of dataset %s: %s chunks of %s files in %.2f s",
        dataset_pk,
        stats["chunks"],
        stats["files"],
        stats["seconds"],
    )
    return entry


@lru_cache(maxsize=16)
def _open(path: str, mtime: float) -> ContextIndex:
    return ContextIndex(Path(path))


def context_index_open(dataset_pk: int) -> ContextIndex | None:
    """The dataset's index, or None when it has none (a dataset built before indexes existed)."""
    path = paths.context_index_path(dataset_pk)
    if not path.is_file():
        return None
    return _open(str(path), path.stat().st_mtime)
