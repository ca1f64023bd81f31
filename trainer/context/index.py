"""A lexical code index of one dataset, in an embedded SQLite FTS5 table (no server): definition-sized
chunks of its training files, and sliding windows of their lines, each stored with the lines that
follow it (RepoCoder: the code that came after similar code is what the cursor needs next). Both are
ranked by BM25 over identifiers and their sub-words.

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
# Windows: WINDOW_LINES lines every WINDOW_STRIDE lines, each with the CONTINUATION_LINES after it,
# asked with the WINDOW_QUERY_LINES lines above the cursor's line.
WINDOW_LINES = 20
WINDOW_STRIDE = 10
CONTINUATION_LINES = 10
WINDOW_QUERY_LINES = 15
RETRIEVAL = "chunks"  # context_snippets' default, "chunks" or "windows": windows are not yet measured better
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
    continuation: str = ""  # a window's next lines (empty for a chunk)

    @property
    def snippet(self) -> str:
        """What the prompt shows: the text, then the lines that followed it."""
        return f"{self.text}\n{self.continuation}" if self.continuation else self.text


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


def windows_split(repo: str, path: str, language: str, text: str) -> list[Chunk]:
    """A file as WINDOW_LINES-line windows every WINDOW_STRIDE lines, each carrying the
    CONTINUATION_LINES lines after it."""
    lines = text.split("\n")
    last = max(1, len(lines) - WINDOW_LINES + WINDOW_STRIDE)
    out = []
    for a in range(0, last, WINDOW_STRIDE):
        b = a + WINDOW_LINES
        body = "\n".join(lines[a:b]).strip("\n")
        if len(body.strip()) < MIN_CHUNK_CHARS:
            continue
        after = "\n".join(lines[b : b + CONTINUATION_LINES]).rstrip()
        out.append(Chunk(repo, path, language, a + 1, body, after))
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
CREATE VIRTUAL TABLE windows USING fts5(
    terms, repo UNINDEXED, path UNINDEXED, language UNINDEXED, start_line UNINDEXED, body UNINDEXED,
    continuation UNINDEXED, tokenize = "unicode61 tokenchars '_'"
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE df (term TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"""
# A query term found in more than this share of chunks says little and costs most (its posting list
# is long): it is left out of the query. The rarest terms are kept first.
COMMON_SHARE = 0.005
MIN_COMMON = 50
QUERY_KEEP = 10
_INSERT = {
    "chunks": "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
    "windows": "INSERT INTO windows VALUES (?, ?, ?, ?, ?, ?, ?)",
}


def _file_rows(record: dict, df: Counter) -> tuple[list[tuple], list[tuple]]:
    """The chunk rows and the window rows of one dataset row; counts the chunks' terms into `df`."""
    args = (record.get("repo", ""), record["path"], record.get("language", ""), record["text"])
    chunks = []
    for c in chunks_split(*args):
        words = terms(c.path + "\n" + c.text)
        df.update(set(words))
        chunks.append((" ".join(words), c.repo, c.path, c.language, c.start_line, c.text))
    windows = [
        (" ".join(terms(w.text)), w.repo, w.path, w.language, w.start_line, w.text, w.continuation)
        for w in windows_split(*args)
    ]
    return chunks, windows


def index_build(path: Path, files: Iterable[dict]) -> dict:
    """Write the index of `files` (dataset rows: repo, path, language, text) to `path`, atomically.
    Returns counts and the build time for the dataset's manifest."""
    started = time.monotonic()
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    counts = {"files": 0, "chunks": 0, "windows": 0}
    try:
        conn.executescript(_SCHEMA)
        pending: dict[str, list[tuple]] = {"chunks": [], "windows": []}
        df: Counter = Counter()
        for record in files:
            counts["files"] += 1
            chunks, windows = _file_rows(record, df)
            pending["chunks"] += chunks
            pending["windows"] += windows
            for table, rows in pending.items():
                if len(rows) >= 5000:
                    conn.executemany(_INSERT[table], rows)
                    counts[table] += len(rows)
                    rows.clear()
        for table, rows in pending.items():
            conn.executemany(_INSERT[table], rows)
            counts[table] += len(rows)
        conn.executemany("INSERT INTO df VALUES (?, ?)", df.items())
        for table in ("chunks", "windows"):
            conn.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in counts.items()])
        conn.commit()
    finally:
        conn.close()
    os.replace(partial, path)
    return {**counts, "bytes": path.stat().st_size, "seconds": round(time.monotonic() - started, 2)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b|: RepoCoder's similarity of a query and a window (0 when both are empty)."""
    return len(a & b) / len(a | b) if a or b else 0.0


class ContextIndex:
    """Read side of one index file. Thread-safe: each thread gets its own read-only connection."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(self.path)
        self._local = threading.local()
        meta = dict(self._conn().execute("SELECT key, value FROM meta").fetchall())
        self.chunks = int(meta.get("chunks", 0))
        self.windows = int(meta.get("windows", 0))  # 0: an index built before windows existed
        self.common = max(MIN_COMMON, int(self.chunks * COMMON_SHARE))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    def _hits(self, table: str, columns: str, text: str, repo: str, limit: int) -> list[tuple]:
        """Rows of `table` matching `text`'s informative terms, best BM25 first."""
        words = self.terms_pick(query_terms(text))
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        where, params = ("AND repo = ? ", (match, repo)) if repo else ("", (match,))
        return (
            self._conn()
            .execute(
                f"SELECT {columns} FROM {table} WHERE {table} MATCH ? {where}ORDER BY bm25({table}) LIMIT ?",
                (*params, limit),
            )
            .fetchall()
        )

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
        rows = self._hits("chunks", "repo, path, language, start_line, body", text, repo, k * 4 + 8)
        out = []
        for row_repo, path, lang, start, body in rows:
            if _allowed(path, lang, exclude_path, language, keep):
                out.append(Chunk(row_repo, path, lang, int(start), body))
                if len(out) >= k:
                    break
        return out

    def search_windows(
        self,
        text: str,
        *,
        k: int = 4,
        exclude_path: str = "",
        language: str = "",
        keep: Callable[[str], bool] | None = None,
        repo: str = "",
        rerank: bool = True,
        pool: int = 32,
    ) -> list[Chunk]:
        """The `k` windows (each with its continuation) that best match `text`, with the same rules
        as `search`. BM25 picks `pool` candidates; with `rerank` they are ordered by the Jaccard
        similarity of their identifiers to the query's. A window overlapping a better one of the same
        file is left out (it would repeat its lines)."""
        columns = "repo, path, language, start_line, body, continuation, terms"
        rows = [
            r
            for r in self._hits("windows", columns, text, repo, pool)
            if _allowed(*r[1:3], exclude_path, language, keep)
        ]
        if rerank:
            wanted = set(terms(text))
            scores = [jaccard(wanted, set(r[6].split())) for r in rows]
            rows = [r for _, r in sorted(zip(scores, rows), key=lambda p: -p[0])]
        out: list[Chunk] = []
        for row_repo, path, lang, start, body, after, _ in rows:
            if any(c.path == path and abs(c.start_line - int(start)) < WINDOW_LINES for c in out):
                continue
            out.append(Chunk(row_repo, path, lang, int(start), body, after))
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


def _allowed(
    path: str, lang: str, exclude_path: str, language: str, keep: Callable[[str], bool] | None
) -> bool:
    """Not the current file, of the wanted language, a path `keep` accepts."""
    return path != exclude_path and not (language and lang != language) and (keep is None or keep(path))


def snippets_pick(chunks: list[Chunk], *, budget_chars: int) -> list[tuple[str, str]]:
    """(path, text) pairs for the prompt builder within a character budget, best chunk nearest the
    cursor: the prompt builder keeps them in the order given, so the best one goes last."""
    picked, used = [], 0
    for c in chunks:
        text = c.snippet
        if used + len(text) > budget_chars:
            continue
        picked.append((c.path, text))
        used += len(text) + len(c.path) + 8
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
    retrieval: str = RETRIEVAL,
) -> list[tuple[str, str]]:
    """(path, text) snippets of the rest of the repository for a cursor at the end of `prefix` in
    `filepath`: same language, never the file itself, only of `repo` when given (the request's
    repository), only paths `keep` accepts, best one last. `retrieval` "windows" returns the windows
    most like the last lines above the cursor's line, each with the lines that followed it; "chunks"
    (and any index built before windows existed) the definitions most like the last QUERY_LINES."""
    rules = {"exclude_path": filepath, "language": language, "keep": keep, "repo": repo, "k": k}
    if retrieval == "windows" and index.windows:
        query = cursor_query(prefix, WINDOW_QUERY_LINES)
        found = index.search_windows(query, **rules) if query.strip() else []
    else:
        query = cursor_query(prefix)
        found = index.search(query, **rules) if query.strip() else []
    return snippets_pick(found, budget_chars=budget_chars)
