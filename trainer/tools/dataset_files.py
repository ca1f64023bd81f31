"""The on-disk form of a dataset's files: one JSON object a line (path, language, text, ...) in
`train.jsonl` and `heldout.jsonl` of the dataset's folder, and, when the dataset took accepted
completions, `accepted.jsonl` (path, language, prefix, middle, suffix, source: training only)."""

from __future__ import annotations

import json
from pathlib import Path

ACCEPTED_NAME = "accepted.jsonl"


def dataset_files_read(dataset_dir: Path, split: str) -> list[dict]:
    with (dataset_dir / f"{split}.jsonl").open() as f:
        return [json.loads(line) for line in f]


def dataset_accepted_read(dataset_dir: Path) -> list[dict]:
    """The dataset's accepted-completion samples; none for a dataset built without them."""
    path = dataset_dir / ACCEPTED_NAME
    if not path.exists():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f]
