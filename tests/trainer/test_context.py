"""The code index: definition chunks, BM25 retrieval over identifiers, built with the dataset from
its training rows only (no held-out file, no secret, no excluded file)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import CODE_FILES, git_repo_make, stdlib_files

SOURCE = '''"""A module."""
import os

LIMIT = 3


@decorated
def first_function(a, b):
    return a + b


class Widget:
    def render(self):
        return "w"
'''


def test_python_chunks_are_definitions_with_their_decorators():
    from trainer.context.index import chunks_split

    chunks = chunks_split("r", "m.py", "python", SOURCE)
    starts = {c.start_line: c.text.split("\n")[0] for c in chunks}
    assert starts[7] == "@decorated" and starts[12] == "class Widget:"
    assert any(c.text.startswith('"""A module."""') for c in chunks)
    broken = chunks_split("r", "m.py", "python", SOURCE + "\ndef broken(:\n    pass  # does not parse\n")
    assert any("def broken" in c.text for c in broken)  # regex fallback keeps every line


def test_terms_split_identifiers_and_drop_keywords():
    from trainer.context.index import query_terms, terms

    assert terms("self.parseConfigFile(raw_json_text)") == [
        "parseconfigfile",
        "parse",
        "config",
        "file",
        "raw_json_text",
        "raw",
        "json",
        "text",
    ]
    assert query_terms("a_first\nreturn b_second")[0] == "second"  # nearest the cursor first


def test_search_ranks_by_shared_identifiers_and_excludes_the_current_file(tmp_path):
    from trainer.context.index import ContextIndex, index_build

    files = [
        {
            "repo": "r",
            "path": "pay/ledger.py",
            "language": "python",
            "text": "def ledger_balance(account_id):\n    return sum_entries(account_id, kind='credit')\n",
        },
        {
            "repo": "r",
            "path": "ui/colors.py",
            "language": "python",
            "text": "def palette_pick(theme):\n    return THEMES[theme]['primary_color']\n",
        },
        {
            "repo": "r",
            "path": "pay/report.py",
            "language": "python",
            "text": "def report(account_id):\n    total = ledger_balance(account_id)\n",
        },
    ]
    stats = index_build(tmp_path / "i.sqlite", files)
    assert stats["files"] == 3 and stats["chunks"] == 3
    index = ContextIndex(tmp_path / "i.sqlite")
    hits = index.search("def statement(account_id):\n    b = ledger_balance(", k=3)
    assert {h.path for h in hits} == {"pay/ledger.py", "pay/report.py"}  # colors.py shares no identifier
    assert index.search("theme = palette_pick(", k=1)[0].path == "ui/colors.py"
    hits = index.search("x = ledger_balance(account_id)", k=3, exclude_path="pay/ledger.py")
    assert "pay/ledger.py" not in [h.path for h in hits] and hits[0].path == "pay/report.py"
    assert index.search("x = ledger_balance(account_id)", k=3, keep=lambda p: not p.startswith("pay/")) == []
    assert index.search("   ", k=3) == []


@pytest.mark.django_db
def test_dataset_stage_builds_the_index_from_training_rows_only(tmp_path):
    from trainer.context.services import context_index_open
    from trainer.datasets.builder import DatasetOptions, dataset_files_read
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register

    files: dict[str, str | bytes] = stdlib_files(CODE_FILES)
    files["src/conf.py"] = 'DB_PASSWORD = "Winter2024!x99"\ndef conf_load():\n    return DB_PASSWORD\n'
    files["gen/skip_me.py"] = "def skipped_generated_thing():\n    return 1\n"
    repo = repository_register(source=str(git_repo_make(tmp_path / "rep", files)), exclude_globs="gen/\n")
    dataset = dataset_build(repositories=[repo], options=DatasetOptions(heldout_percent=20))
    entry = dataset.manifest["context_index"]
    index_file = Path(dataset.path) / entry["path"]
    assert (
        entry["split"] == "train"
        and entry["files"] == dataset.train_files
        and entry["chunks"] > entry["files"]
    )
    assert json.loads((Path(dataset.path) / "manifest.json").read_text())["context_index"] == entry
    rows = sqlite3.connect(index_file).execute("SELECT path, body FROM chunks").fetchall()
    indexed = {p for p, _ in rows}
    assert indexed == {f["path"] for f in dataset_files_read(Path(dataset.path), "train")}
    assert not indexed & {f["path"] for f in dataset_files_read(Path(dataset.path), "heldout")}
    assert "gen/skip_me.py" not in indexed
    assert not any("Winter2024" in body for _, body in rows)
    assert context_index_open(dataset.pk).search("scanner = make_scanner(context)", k=1)
