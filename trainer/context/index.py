"""A lexical code index of one dataset: definition-sized chunks of its training files, ranked by BM25
over identifiers and their sub-words in an embedded SQLite FTS5 table (no server).

RepoCoder and CrossCodeEval found that plain lexical retrieval of repository snippets already
doubles a small model's exact match: near-misses (the right module, a wrong name) are exactly what
the rest of the repository fixes. The index is built from the dataset's scrubbed, filtered rows, so
nothing a dataset dropped (secrets, excluded files, held-out files) can come back as context.
"""

from __future__ import annotations

import ast
import os
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK_LINES = 40  # longest chunk; longer definitions and module-level code are cut into windows
MIN_CHUNK_CHARS = 24
QUERY_LINES = 30
MAX_QUERY_TERMS = 24
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SUBWORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_TOP_DEF = re.compile(
    r"^(?:export\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:def|class|fn|func|function|interface|struct|impl|"
    r"enum|trait|type|public|private|protected|static|module|package)\b"
)
# Words every file of a language has: they only slow the query down and blur the ranking.
STOPWORDS = frozenset(
    [
        "self",
        "cls",
        "def",
        "class",
        "return",
        "import",
        "from",
        "as",
        "if",
        "else",
        "elif",
        "for",
        "in",
        "while",
        "not",
        "and",
        "or",
        "is",
        "none",
        "true",
        "false",
        "none",
        "true",
        "false",
        "try",
        "except",
        "finally",
        "with",
        "raise",
        "pass",
        "break",
        "continue",
        "lambda",
        "yield",
        "async",
        "await",
        "function",
        "var",
        "let",
        "const",
        "new",
        "this",
        "null",
        "undefined",
        "public",
        "private",
        "protected",
        "static",
        "void",
        "int",
        "str",
        "string",
        "bool",
        "float",
        "list",
        "dict",
        "the",
        "a",
        "an",
        "of",
        "to",
    ]
)


@dataclass(frozen=True)
class Chunk:
    repo: str
    path: str
    language: str
    start_line: int  # 1-based
    text: str


def _windows(lines: list[str], start: int, end: int) -> Iterable[tuple[int, int]]:
    for a in range(start, end, CHUNK_LINES):
        yield a, min(end, a + CHUNK_LINES)


def _python_spans(text: str, lines: list[str]) -> list[tuple[int, int]] | None:
    """Line spans [a, b) of top-level definitions (decorators included); None if it does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    spans = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            spans.append((first, node.end_lineno or node.lineno))
    return spans


def _regex_spans(lines: list[str]) -> list[tuple[int, int]]:
    """Top-level definitions by a line starting at column 0 with a definition keyword."""
    starts = [i for i, line in enumerate(lines) if _TOP_DEF.match(line)]
    return [(a, b) for a, b in zip(starts, [*starts[1:], len(lines)])]


def chunks_split(repo: str, path: str, language: str, text: str) -> list[Chunk]:
    """A file cut into definitions (Python by `ast`, other languages by a top-level keyword line),
    the code between them and anything longer than CHUNK_LINES cut into line windows."""
    lines = text.split("\n")
    spans = _python_spans(text, lines) if language == "python" else None
    if spans is None:
        spans = _regex_spans(lines)
    pieces: list[tuple[int, int]] = []
    pos = 0
    for a, b in spans:
        if a > pos:
            pieces.extend(_windows(lines, pos, a))
        pieces.extend(_windows(lines, max(a, pos), b))
        pos = max(pos, b)
    pieces.extend(_windows(lines, pos, len(lines)))
    out = []
    for a, b in pieces:
        body = "\n".join(lines[a:b]).strip("\n")
        if len(body.strip()) >= MIN_CHUNK_CHARS:
            out.append(Chunk(repo, path, language, a + 1, body))
    return out


def terms(text: str) -> list[str]:
    """Identifiers (lower-cased) and their snake/camel-case sub-words, in order, with repeats."""
    out = []
    for ident in _IDENT.findall(text):
        low = ident.lower()
        if low in STOPWORDS or len(low) < 2:
            continue
        out.append(low)
        parts = [p.lower() for part in ident.split("_") for p in _SUBWORD.findall(part)]
        if len(parts) > 1:
            out.extend(p for p in parts if len(p) > 1 and p not in STOPWORDS)
    return out


def query_text(prefix: str, lines: int = QUERY_LINES) -> str:
    """What retrieval looks for: the last `lines` lines before the cursor."""
    return "\n".join(prefix.split("\n")[-lines:])


def query_terms(text: str, limit: int = MAX_QUERY_TERMS) -> list[str]:
    """The distinct terms of `text`, the ones nearest the cursor first (they say most about the line)."""
    seen: dict[str, None] = {}
    for term in reversed(terms(text)):
        seen.setdefault(term, None)
        if len(seen) >= limit:
            break
    return list(seen)


_SCHEMA = """
CREATE VIRTUAL TABLE chunks USING fts5(
    terms, repo UNINDEXED, path UNINDEXED, language UNINDEXED, start_line UNINDEXED, body UNINDEXED,
    tokenize = "unicode61 tokenchars '_'"
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE df (term TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"""
# A query term found in more than this share of chunks says little and costs most (its posting list
# is long): it is left out of the query. The rarest terms are kept first.
COMMON_SHARE = 0.005
MIN_COMMON = 50
QUERY_KEEP = 10


def index_build(path: Path, files: Iterable[dict]) -> dict:
    """Write the index of `files` (dataset rows: repo, path, language, text) to `path`, atomically.
    Returns counts and the build time for the dataset's manifest."""
    started = time.monotonic()
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    n_files = n_chunks = 0
    try:
        conn.executescript(_SCHEMA)
        rows, df = [], Counter()
        for record in files:
            n_files += 1
            for c in chunks_split(
                record.get("repo", ""), record["path"], record.get("language", ""), record["text"]
            ):
                words = terms(c.path + "\n" + c.text)
                df.update(set(words))
                rows.append((" ".join(words), c.repo, c.path, c.language, c.start_line, c.text))
            if len(rows) >= 5000:
                n_chunks += len(rows)
                conn.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", rows)
                rows = []
        n_chunks += len(rows)
        conn.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO df VALUES (?, ?)", df.items())
        conn.execute("INSERT INTO chunks(chunks) VALUES ('optimize')")
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("files", str(n_files)), ("chunks", str(n_chunks))]
        )
        conn.commit()
    finally:
        conn.close()
    os.replace(partial, path)
    return {
        "files": n_files,
        "chunks": n_chunks,
        "bytes": path.stat().st_size,
        "seconds": round(time.monotonic() - started, 2),
    }


class ContextIndex:
    """Read side of one index file. Thread-safe: each thread gets its own read-only connection."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(self.path)
        self._local = threading.local()
        meta = dict(self._conn().execute("SELECT key, value FROM meta").fetchall())
        self.chunks = int(meta.get("chunks", 0))
        self.common = max(MIN_COMMON, int(self.chunks * COMMON_SHARE))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    def search(
        self,
        text: str,
        *,
        k: int = 4,
        exclude_path: str = "",
        language: str = "",
        keep: Callable[[str], bool] | None = None,
        repo: str = "",
    ) -> list[Chunk]:
        """The `k` chunks that best match `text` (BM25), never from `exclude_path` (the current file),
        only of `language` when given, only of repository `repo` when given, only paths `keep`
        accepts."""
        words = self.terms_pick(query_terms(text))
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        where, params = ("AND repo = ? ", (match, repo)) if repo else ("", (match,))
        rows = (
            self._conn()
            .execute(
                "SELECT repo, path, language, start_line, body FROM chunks WHERE chunks MATCH ? "
                f"{where}ORDER BY bm25(chunks) LIMIT ?",
                (*params, k * 4 + 8),
            )
            .fetchall()
        )
        out = []
        for row_repo, path, lang, start, body in rows:
            if (
                path == exclude_path
                or (language and lang != language)
                or (keep is not None and not keep(path))
            ):
                continue
            out.append(Chunk(row_repo, path, lang, int(start), body))
            if len(out) >= k:
                break
        return out

    def terms_pick(self, words: list[str]) -> list[str]:
        """The query's informative terms: those the index has, not in too many chunks, rarest first."""
        if not words:
            return []
        marks = ",".join("?" * len(words))
        df = dict(self._conn().execute(f"SELECT term, n FROM df WHERE term IN ({marks})", words).fetchall())
        kept = sorted((n, w) for w, n in df.items() if n <= self.common)
        return [w for _, w in kept[:QUERY_KEEP]]


def snippets_pick(chunks: list[Chunk], *, budget_chars: int) -> list[tuple[str, str]]:
    """(path, text) pairs for the prompt builder within a character budget, best chunk nearest the
    cursor: the prompt builder keeps them in the order given, so the best one goes last."""
    picked, used = [], 0
    for c in chunks:
        if used + len(c.text) > budget_chars:
            continue
        picked.append((c.path, c.text))
        used += len(c.text) + len(c.path) + 8
    return picked[::-1]


def cursor_query(prefix: str, lines: int = QUERY_LINES) -> str:
    """The query of a cursor: the `lines` whole lines above the cursor's own line. Leaving out the
    line being typed keeps the query, hence the snippets and the prompt's front, the same from one
    keystroke to the next, so each keystroke still extends a cached prompt."""
    cut = prefix.rfind("\n")
    return query_text(prefix[: cut + 1] if cut >= 0 else "", lines)


def context_snippets(
    index: ContextIndex,
    prefix: str,
    *,
    filepath: str = "",
    language: str = "",
    budget_chars: int = 2400,
    k: int = 4,
    keep: Callable[[str], bool] | None = None,
    repo: str = "",
) -> list[tuple[str, str]]:
    """(path, text) snippets of the rest of the repository for a cursor at the end of `prefix` in
    `filepath`: same language, never the file itself, only of `repo` when given (the request's
    repository), only paths `keep` accepts, best one last."""
    query = cursor_query(prefix)
    if not query.strip():
        return []
    found = index.search(query, k=k, exclude_path=filepath, language=language, keep=keep, repo=repo)
    return snippets_pick(found, budget_chars=budget_chars)
