"""Dataset rows: build one from registered repositories at their current SHAs."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from django.conf import settings
from django.db import transaction

from appliance import paths
from appliance.errors import DatasetError, HearthError
from appliance.status import heartbeat_keep
from trainer.context.services import context_index_build
from trainer.datasets.builder import (
    BuildResult,
    DatasetOptions,
    DatasetRejected,
    SourceRepo,
    dataset_build_files,
)
from trainer.models import Dataset, Repository
from trainer.models.datasets import DatasetFile, DatasetPolicy

logger = logging.getLogger(__name__)


def dataset_build(
    *,
    repositories: list[Repository],
    options: DatasetOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Create a Dataset row, then build it (see `dataset_execute`)."""
    return dataset_execute(
        dataset=dataset_create(repositories=repositories, options=options), progress=progress
    )


def dataset_create(*, repositories: list[Repository], options: DatasetOptions | None = None) -> Dataset:
    """A pending Dataset row for `repositories` at their synced commits, created before any work so
    that whatever happens next is recorded on it. Global exclusion patterns (`dataset_exclude_globs`)
    are added to the options' own."""
    options = dataset_options_effective(options=options)
    dataset = Dataset.objects.create(
        options=asdict(options), commits={r.name: r.head_sha for r in repositories}
    )
    dataset.repositories.set(repositories)
    return dataset


def dataset_execute(*, dataset: Dataset, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Build the files of a pending dataset; store the report and the per-file list with it."""
    options = DatasetOptions(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in dataset.options.items()}
    )
    repositories = list(dataset.repositories.all())
    not_ready = [r.name for r in repositories if r.status != Repository.Status.READY or not r.head_sha]
    if not repositories or not_ready:
        reason = f"Repositories not synced yet: {', '.join(not_ready) or 'none given'}."
        dataset.log_line(f"failed: {reason}")
        dataset.transition(Dataset.Status.FAILED, reason=reason)
        raise DatasetError(reason)
    dataset.transition(Dataset.Status.BUILDING)
    with heartbeat_keep(dataset):
        return _dataset_fill(dataset, repositories, options, progress)


def _dataset_fill(
    dataset: Dataset,
    repositories: list[Repository],
    options: DatasetOptions,
    progress: Callable[[int, int], None] | None,
) -> Dataset:
    out = paths.dataset_dir(dataset.pk)
    sources = repository_sources(repositories=repositories)
    try:
        result = dataset_build_files(sources, out, options, progress)
    except DatasetRejected as exc:
        _result_store(dataset, exc.result)
        dataset.log_line(f"failed: {exc}")
        dataset.transition(Dataset.Status.FAILED, reason=str(exc))
        raise
    except HearthError as exc:
        dataset.log_line(f"failed: {exc}")
        dataset.transition(Dataset.Status.FAILED, reason=str(exc))
        raise
    try:
        index = context_index_build(dataset_dir=out, dataset_pk=dataset.pk)
    except (OSError, sqlite3.Error) as exc:
        reason = f"The code index of the dataset could not be written: {exc}"
        dataset.log_line(f"failed: {reason}")
        dataset.transition(Dataset.Status.FAILED, reason=reason)
        raise DatasetError(reason) from exc
    dataset.path = str(out)
    dataset.manifest = json.loads((out / "manifest.json").read_text())
    _result_store(dataset, result)
    dataset.transition(Dataset.Status.READY)
    secrets = result.report()["secrets"]
    dataset.log_line(
        f"built: {result.train_files} training files, {result.heldout_files} held-out, "
        f"{sum(result.skipped.values())} skipped, {secrets['total']} secrets scrubbed in {secrets['files']} files, "
        f"about {result.train_tokens + result.heldout_tokens:,} tokens, in {result.seconds:.1f} s; "
        f"code index {index['chunks']} chunks in {index['seconds']:.1f} s"
    )
    logger.info("dataset %s built in %.1f s: %s", dataset.pk, result.seconds, dict(result.phases))
    return dataset


def dataset_exclude_globs() -> list[str]:
    """The global exclusion patterns in force: the admin's (Policies page) once saved, else
    HEARTH_DATASET_EXCLUDE."""
    row = DatasetPolicy.objects.filter(pk=1).first()
    if row is None or row.exclude_globs is None:
        return list(settings.HEARTH_DATASET_EXCLUDE)
    return row.globs


def dataset_exclude_globs_set(*, text: str) -> DatasetPolicy:
    """Store the admin's global exclusion patterns (one a line; empty: none, whatever the default)."""
    row, _ = DatasetPolicy.objects.update_or_create(pk=1, defaults={"exclude_globs": text})
    return row


def dataset_options_effective(*, options: DatasetOptions | None) -> DatasetOptions:
    """`options` plus the global exclusion patterns (`dataset_exclude_globs`)."""
    options = options or DatasetOptions()
    extra = [g for g in dataset_exclude_globs() if g not in options.exclude_globs]
    return replace(options, exclude_globs=(*options.exclude_globs, *extra)) if extra else options


def repository_sources(*, repositories: list[Repository]) -> list[SourceRepo]:
    """What the builder reads of each repository: its mirror at the synced commit, with its own filters."""
    return [
        SourceRepo(r.name, Path(r.mirror_path), r.head_sha, r.exclude_patterns, r.language_choice)
        for r in repositories
    ]


def _result_store(dataset: Dataset, result: BuildResult) -> None:
    """Save the report on the row and the searchable file list beside it (kept and dropped)."""
    dataset.report = result.report()
    dataset.train_files, dataset.heldout_files = result.train_files, result.heldout_files
    dataset.train_bytes = result.train_bytes
    with transaction.atomic():
        dataset.save(
            update_fields=[
                "path",
                "manifest",
                "report",
                "train_files",
                "heldout_files",
                "train_bytes",
                "updated_at",
            ]
        )
        DatasetFile.objects.filter(dataset=dataset).delete()
        DatasetFile.objects.bulk_create(
            (DatasetFile(dataset=dataset, **row) for row in result.files), batch_size=2000
        )
