"""bench-onebox's evaluation child counts every task each arm scored, as the harness reports them."""

from __future__ import annotations

import json

from benchmarks.onebox_evaluation import files_read, tasks_scored


def test_tasks_scored_counts_every_arm_of_every_model():
    report = {
        "models": {
            "base": {"line_completion": {"fim": {"tasks": 30}, "fim+context": {"tasks": 30}}},
            "candidate": {"line_completion": {"prefix": {"tasks": 30}, "fim_multiline": {"tasks": 4}}},
        }
    }
    assert tasks_scored(report) == 94


def test_files_read_reads_one_split(tmp_path):
    rows = [{"path": "a.py", "language": "python", "text": "x = 1\n"}]
    (tmp_path / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert files_read(tmp_path, "heldout") == rows
