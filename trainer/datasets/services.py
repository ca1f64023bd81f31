"""Dataset rows: build one from registered repositories at their current SHAs."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from django.conf import settings
from django.db import transaction

from appliance import paths
from appliance.errors import DatasetError
from appliance.stages import Stage, stage_refuse, stage_run
from trainer.context.services import context_index_build
from trainer.datasets.accepted import accepted_built_line, accepted_policy_check
from trainer.datasets.builder import (
    BuildResult,
    DatasetOptions,
    DatasetRejected,
    SourceRepo,
    dataset_build_files,
    dataset_manifest_fields,
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
    are added to the options' own. Accepted completions are refused here already while the telemetry
    policy does not collect content."""
    options = dataset_options_effective(options=options)
    if options.accepted_completions:
        accepted_policy_check()
    dataset = Dataset.objects.create(
        options=asdict(options), commits={r.name: r.head_sha for r in repositories}
    )
    dataset.repositories.set(repositories)
    return dataset


def dataset_execute(*, dataset: Dataset, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Build the files of a pending dataset and its code index through the stage runner; store the
    report and the per-file list with it."""
    options = DatasetOptions(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in dataset.options.items()}
    )
    repositories = list(dataset.repositories.all())
    not_ready = [r.name for r in repositories if r.status != Repository.Status.READY or not r.head_sha]
    if not repositories or not_ready:
        reason = f"Repositories not synced yet: {', '.join(not_ready) or 'none given'}."
        stage_refuse(dataset, reason)
        raise DatasetError(reason)

    def keep_refusal(exc: BaseException) -> None:  # what the builder refused, kept on the row
        if isinstance(exc, DatasetRejected):
            _result_store(dataset, exc.result)

    stage_run(
        dataset,
        lambda stage: _dataset_fill(stage, repositories, options, progress),
        stage="dataset",
        claim_to=Dataset.Status.BUILDING,
        done_to=Dataset.Status.READY,
        on_error=keep_refusal,
    )
    return dataset


def _dataset_fill(
    stage: Stage,
    repositories: list[Repository],
    options: DatasetOptions,
    progress: Callable[[int, int], None] | None,
) -> None:
    dataset: Dataset = stage.row
    out = paths.dataset_dir(dataset.pk)
    result = dataset_build_files(repository_sources(repositories=repositories), out, options, progress)
    stage.timed("files_s", result.seconds)
    try:
        index = context_index_build(dataset_dir=out, dataset_pk=dataset.pk)
    except (OSError, sqlite3.Error) as exc:
        raise DatasetError(f"The code index of the dataset could not be written: {exc}") from exc
    stage.timed("index_s", index["seconds"])
    stage.manifest(out, **dataset_manifest_fields(result, options, out), context_index=index)
    manifest = stage.manifest_flush()  # now: the row keeps what the file says
    dataset.path, dataset.manifest = str(out), manifest
    _result_store(dataset, result)
    secrets = result.report()["secrets"]
    stage.log(
        f"built: {result.train_files} training files, {result.heldout_files} held-out, "
        f"{sum(result.skipped.values())} skipped, {secrets['total']} secrets scrubbed in {secrets['files']} files, "
        f"about {result.train_tokens + result.heldout_tokens:,} tokens, in {result.seconds:.1f} s; "
        f"code index {index['chunks']} chunks in {index['seconds']:.1f} s"
    )
    if result.accepted:
        stage.log(accepted_built_line(result.accepted))
    logger.info("dataset %s built in %.1f s: %s", dataset.pk, result.seconds, dict(result.phases))


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
