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
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.tools.dataset_files import dataset_files_read

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


LEDGER_FILES = [
    {
        "repo": "r",
        "path": "pay/ledger.py",
        "language": "python",
        "text": "def ledger_balance(account_id):\n    return sum_entries(account_id, kind='credit')\n",
    },
    {
        "repo": "r",
        "path": "pay/report.py",
        "language": "python",
        "text": "def report(account_id):\n    total = ledger_balance(account_id)\n    return total\n",
    },
    {
        "repo": "r",
        "path": "web/ledger.js",
        "language": "javascript",
        "text": "function ledgerBalance(accountId) {\n  return ledger_balance(accountId);\n}\n",
    },
]


def test_the_cursor_query_stays_put_while_a_line_is_typed(tmp_path):
    from trainer.context.index import ContextIndex, context_snippets, cursor_query, index_build

    above = "import pay\n\ndef statement(account_id):\n    b = ledger_balance(account_id)\n"
    assert cursor_query(above + "    tot") == cursor_query(above + "    total = rep") == cursor_query(above)
    index_build(tmp_path / "i.sqlite", LEDGER_FILES)
    index = ContextIndex(tmp_path / "i.sqlite")
    typed = [
        context_snippets(
            index, above + word, filepath="pay/statement.py", language="python", retrieval="chunks"
        )
        for word in ("", "    t", "    total = ")
    ]
    assert typed[0] == typed[1] == typed[2] and typed[0]  # the prompt's front is the same at each keystroke
    paths = [p for p, _ in typed[0]]
    assert "web/ledger.js" not in paths  # same language only
    assert paths[-1] == "pay/ledger.py"  # the best snippet goes last, nearest the cursor
    own = context_snippets(index, above, filepath="pay/ledger.py", language="python", retrieval="chunks")
    assert "pay/ledger.py" not in [p for p, _ in own]


def test_training_samples_carry_context_as_the_prompt_builder_writes_it(micro_base, micro_dir, tmp_path):
    """A context sample's text is exactly the served prompt's text for the same snippets and file, so
    what the model learns to use is what serving will show it."""
    from appliance.llm.fim import fim_format_get
    from appliance.llm.prompt import Completer
    from appliance.llm.runtime import llama_open
    from trainer.tools.tokenizers import tokenizer_load
    from trainer.training.loop import file_sep_token
    from trainer.training.samples import Piece, context_pieces

    fmt = fim_format_get(micro_base.fim_format)
    tokenizer = tokenizer_load(str(micro_dir))
    sep = file_sep_token(tokenizer, fmt)
    assert sep == fmt.file_sep
    snippets = [("pay/ledger.py", LEDGER_FILES[0]["text"]), ("pay/report.py", LEDGER_FILES[1]["text"])]
    prefix = "def statement(account_id):\n    b = "
    llm = llama_open(micro_base.gguf_path, n_ctx=512, n_threads=1)
    try:
        completer = Completer(llm, None)
        ids, heal = completer.prompt_build(
            prefix, None, prefix_budget=400, context=snippets, filepath="pay/statement.py"
        )
        served = llm.detokenize(ids, special=True).decode() + heal.decode()
    finally:
        llm.close()
    pieces = context_pieces(snippets, "pay/statement.py", sep) + [Piece(prefix)]
    trained = "".join(p.text for p in pieces)
    assert served.endswith(trained) and served.count(sep) == 3
    comments = "".join(p.text for p in context_pieces(snippets, "pay/statement.py", None))
    assert comments.startswith("# pay/ledger.py\n") and "# pay/report.py\n" in comments


def test_a_share_of_training_samples_carry_other_files_never_their_own(micro_dir, tmp_path):
    from appliance.llm.fim import fim_format_get
    from trainer.tools.tokenizers import tokenizer_load
    from trainer.training.config import LoraSettings
    from trainer.training.loop import sequences_prepare, training_index_build

    files = [{"repo": "r", "language": "python", **f} for f in _stdlib_rows(12)]
    tokenizer = tokenizer_load(str(micro_dir))
    fmt = fim_format_get("hearth")
    eot = tokenizer.convert_tokens_to_ids(fmt.eot)
    sep_id = tokenizer.convert_tokens_to_ids(fmt.file_sep)
    index = training_index_build(tmp_path, files, 0)
    plain, _ = sequences_prepare(files, tokenizer, fmt, eot, LoraSettings(seq_len=256, context_rate=0.0), 0)
    with_ctx, _ = sequences_prepare(
        files, tokenizer, fmt, eot, LoraSettings(seq_len=256, context_rate=0.5), 0, index=index
    )
    assert not any(sep_id in row for row in plain)
    stream = [t for row in with_ctx for t in row]
    assert stream.count(sep_id) >= 4
    # Every context block names another file than the one whose code follows it.
    text = tokenizer.decode(stream, skip_special_tokens=False)
    for sample in text.split(fmt.eot):
        blocks = sample.split(fmt.file_sep)
        if len(blocks) < 3:
            continue
        current = blocks[-1].split("\n", 1)[0]
        assert current and all(b.split("\n", 1)[0] != current for b in blocks[1:-1]), sample[:300]


def _stdlib_rows(n: int) -> list[dict]:
    return [{"path": p, "text": t} for p, t in stdlib_files(CODE_FILES[:n]).items()]


def _numbered(prefix: str, n: int) -> str:
    return "\n".join(f"{prefix}_{i} = {prefix}_source({i})" for i in range(n)) + "\n"


def test_windows_carry_the_lines_that_follow_them():
    from trainer.context.index import CONTINUATION_LINES, WINDOW_LINES, WINDOW_STRIDE, windows_split

    text = _numbered("row", 45)
    windows = windows_split("r", "m.py", "python", text)
    lines = text.split("\n")
    assert [w.start_line for w in windows] == [
        1,
        1 + WINDOW_STRIDE,
        1 + 2 * WINDOW_STRIDE,
        1 + 3 * WINDOW_STRIDE,
    ]
    for w in windows:
        a = w.start_line - 1
        assert w.text == "\n".join(lines[a : a + WINDOW_LINES]).strip("\n")
        assert (
            w.continuation
            == "\n".join(lines[a + WINDOW_LINES : a + WINDOW_LINES + CONTINUATION_LINES]).rstrip()
        )
    assert windows[0].continuation.split("\n")[0] == "row_20 = row_source(20)"
    assert windows[0].snippet == windows[0].text + "\n" + windows[0].continuation
    assert windows[-1].continuation == ""  # the last window reaches the end of the file


WINDOW_FILES = [
    {
        "repo": "r",
        "path": "pay/ledger.py",
        "language": "python",
        "text": "def ledger_open(account_id):\n    entries = ledger_entries(account_id)\n"
        "    balance = entries_total(entries)\n    return ledger_close(balance)\n",
    },
    {
        "repo": "r",
        "path": "pay/invoice.py",
        "language": "python",
        "text": "def invoice_open(account_id):\n    entries = ledger_entries(account_id)\n"
        "    lines = invoice_lines(entries)\n    return invoice_total(lines)\n",
    },
    {
        "repo": "r",
        "path": "ui/theme.py",
        "language": "python",
        "text": "def palette_pick(theme):\n    return THEMES[theme]['primary_color']\n",
    },
]


def test_windows_rank_the_one_most_like_the_last_lines_first_and_bring_its_continuation(tmp_path):
    from trainer.context.index import ContextIndex, context_snippets, index_build

    stats = index_build(tmp_path / "i.sqlite", WINDOW_FILES)
    assert stats["windows"] == 3
    index = ContextIndex(tmp_path / "i.sqlite")
    query = "def statement(account_id):\n    entries = ledger_entries(account_id)\n    balance = entries_total(entries)\n"
    for rerank in (False, True):
        hits = index.search_windows(query, k=3, rerank=rerank)
        assert hits[0].path == "pay/ledger.py" and "ui/theme.py" not in [h.path for h in hits]
    snippets = context_snippets(
        index, query + "    return ", filepath="pay/statement.py", language="python", retrieval="windows"
    )
    assert snippets[-1] == (
        "pay/ledger.py",
        WINDOW_FILES[0]["text"].rstrip("\n"),
    )  # best last, with its return
    chunks = context_snippets(
        index, query, filepath="pay/statement.py", language="python", retrieval="chunks"
    )
    assert chunks and all(p != "ui/theme.py" for p, _ in chunks)


def test_windows_never_come_from_the_current_file_or_an_excluded_path(tmp_path):
    from trainer.context.index import ContextIndex, context_snippets, index_build

    index_build(tmp_path / "i.sqlite", WINDOW_FILES)
    index = ContextIndex(tmp_path / "i.sqlite")
    query = "    entries = ledger_entries(account_id)\n    balance = entries_total(entries)\n"
    own = context_snippets(index, query, filepath="pay/ledger.py", language="python", retrieval="windows")
    assert own and "pay/ledger.py" not in [p for p, _ in own]
    kept = context_snippets(
        index,
        query,
        filepath="x.py",
        language="python",
        keep=lambda p: p != "pay/invoice.py",
        retrieval="windows",
    )
    assert [p for p, _ in kept] == ["pay/ledger.py"]


@pytest.mark.django_db
def test_held_out_files_never_come_back_as_windows(tmp_path):
    from trainer.context.services import context_index_open
    from trainer.datasets.builder import DatasetOptions
    from trainer.datasets.services import dataset_build
    from trainer.mirrors.services import repository_register
    from trainer.tools.dataset_files import dataset_files_read

    repo = repository_register(source=str(git_repo_make(tmp_path / "rep", stdlib_files(CODE_FILES))))
    dataset = dataset_build(repositories=[repo], options=DatasetOptions(heldout_percent=30))
    heldout = dataset_files_read(Path(dataset.path), "heldout")
    assert heldout
    index = context_index_open(dataset.pk)
    rows = sqlite3.connect(index.path).execute("SELECT DISTINCT path FROM windows").fetchall()
    assert {p for (p,) in rows} == {f["path"] for f in dataset_files_read(Path(dataset.path), "train")}
    for f in heldout:  # asked with a held-out file's own lines, the index still answers other files
        lines = f["text"].split("\n")
        for hit in index.search_windows("\n".join(lines[:30]), k=4):
            assert hit.path not in {h["path"] for h in heldout}


def test_window_snippets_are_the_same_at_each_keystroke_of_a_line(tmp_path):
    from trainer.context.index import ContextIndex, context_snippets, index_build

    index_build(tmp_path / "i.sqlite", WINDOW_FILES)
    index = ContextIndex(tmp_path / "i.sqlite")
    above = "def statement(account_id):\n    entries = ledger_entries(account_id)\n"
    typed = [
        context_snippets(
            index, above + word, filepath="pay/statement.py", language="python", retrieval="windows"
        )
        for word in ("", "    b", "    balance = entries_", "    balance = entries_total(invoice_lines")
    ]
    assert typed[0] and all(t == typed[0] for t in typed)
