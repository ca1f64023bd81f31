"""The on-disk form of a dataset's files: one JSON object a line (path, language, text, ...) in
`train.jsonl` and `heldout.jsonl` of the dataset's folder."""

from __future__ import annotations

import json
from pathlib import Path


def dataset_files_read(dataset_dir: Path, split: str) -> list[dict]:
    with (dataset_dir / f"{split}.jsonl").open() as f:
        return [json.loads(line) for line in f]
