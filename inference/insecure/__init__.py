"""The insecure-code response filter: the first line of a suggestion that introduces an obvious
vulnerability (SQL or shell built from formatted strings, eval of non-literal input, unsafe
deserialisation, TLS verification switched off, HTML injected from formatted strings, a password
under MD5/SHA-1, a few classic C and temp-file bugs) is where the suggestion is cut.

Rule source: a hand-written table (inference/insecure/rules.py), each row with its CWE, the
languages it targets, a suggestion it must flag and a near miss it must leave alone (tests run
both for every row). The maintained sources were weighed first, on benchmarks/insecure_corpus.py
(77 vulnerable snippets, 69 near misses):
- CodeShield (Meta's Insecure Code Detector, MIT, on PyPI, made for filtering LLM code): its
  offline half is 78 regexes for these languages, aimed at weak crypto, C string functions and
  PHP superglobals; they find 6 of the 77 and flag 2 of the 69 (any `hashlib.md5(`, a quoted
  `shell_exec`). Its injection, deserialisation and TLS rules are Semgrep rules.
- Semgrep: registry rules are fetched over the network, and a scan starts a native binary in a
  subprocess: about 1.5 s for one rule on one file here, where the budget is a millisecond.
- Bandit (and Dlint): Python only, on `ast`, which a fragment cut mid-statement often fails
  (26 of the corpus's 48 Python snippets parse as sent); on the Python ones it finds 16 of 21
  and flags 8 of 27 near misses, at about 0.6 ms a snippet for one language.
So the rules are regexes over one line at a time, like CodeShield's regex half, written for
precision: a sink counts only when what reaches it was built by interpolation, concatenation or
formatting (or is a variable assigned that way earlier in the suggestion or in the prefix's last
40 lines), never because a sink appears at all; a mitigation in sight on the line (a quoting or
escaping call, a safe loader) clears it.

What a suggestion introduces: its first line is judged as the prefix's last line (and the open
call it sits in, when the prefix ends inside one) plus the suggestion's first line, and counts
only when that joined line is flagged and the prefix's part alone is not. A call left open at
the end of a line is judged together with its next lines (up to four), so a call written over
several lines is cut at its first line. Comment lines are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.insecure.code import COMMENT, IDENT, Scope, learnable, masked_strings, open_parens
from inference.insecure.rules import RULES, Rule

__all__ = ["RULES", "Finding", "Rule", "insecure_find", "rules_hit"]

_CONTINUE_LINES = 4  # a call left open is judged with at most this many next lines


@dataclass(frozen=True)
class Finding:
    offset: int  # where the cut goes: the start of the flagged line (or of the line that built its input)
    rules: tuple[str, ...]  # the ids of the rules that flagged it
    line: str  # the judged line (joined with the prefix's, or with its continuation lines)


def rules_hit(line: str, scope: Scope | None = None, rules: tuple[Rule, ...] = RULES) -> list[str]:
    """The ids of the rules that flag `line` (already joined with whatever it continues)."""
    if not line.strip() or COMMENT.match(line):
        return []
    low = line.lower()
    scope = scope if scope is not None else Scope()
    hits, masked = [], None
    for rule in rules:
        if not any(k in low for k in rule.keywords):
            continue
        matches = list(rule.pattern.finditer(line))
        if not rule.in_strings and matches:
            masked = masked if masked is not None else masked_strings(line)
            matches = [m for m in matches if masked[m.start()] == line[m.start()]]
        if not matches:
            continue
        if rule.check is not None and not any(rule.check(line, m, scope) for m in matches):
            continue
        if rule.unless is not None and rule.unless.search(line):
            continue
        hits.append(rule.id)
    return hits


def _prefix_head(prefix: str) -> str:
    """The prefix's last line, after the lines before it that open a call still open there."""
    lines = prefix[-2000:].rsplit("\n", _CONTINUE_LINES + 1)
    for k in range(2, len(lines) + 1):
        if open_parens(" ".join(lines[-k:-1])) > 0:
            return " ".join(line.strip() for line in lines[-k:-1]) + " " + lines[-1].lstrip()
    return lines[-1]


def insecure_find(text: str, prefix: str = "") -> Finding | None:
    """The first line of `text` (a suggestion that follows `prefix`) that introduces an insecure
    construct, or None."""
    if not text:
        return None
    head = _prefix_head(prefix) if prefix else ""
    low = (head + text).lower()
    rules = tuple(r for r in RULES if any(k in low for k in r.keywords))
    if not rules:  # most suggestions: no rule's keyword anywhere
        return None
    lines = text.split("\n")
    scope = Scope(prefix)
    at = 0
    for i, line in enumerate(lines):
        unit = line
        if open_parens(line) > 0:  # a call left open: judge it with its next lines
            for nxt in lines[i + 1 : i + 1 + _CONTINUE_LINES]:
                unit += " " + nxt.strip()
                if open_parens(unit) <= 0:
                    break
        if i == 0 and head:
            unit = head + unit
        hits = rules_hit(unit, scope, rules)
        if hits and i == 0 and head.strip():
            before = set(rules_hit(head, scope, rules))
            hits = [h for h in hits if h not in before]
        if hits:
            return Finding(min([at, *_builders(unit, hits, scope, at)]), tuple(hits), unit)
        judged = head + line if i == 0 else line
        if learnable(judged) and not COMMENT.match(judged):
            scope.learn(judged, at)
        at += len(line) + 1
    return None


# The rules whose input may be a variable built earlier: the cut goes before the line that built it
# when that line is in the suggestion.
_BUILT_INPUT = {
    "sql-built-variable": "sql",
    "shell-built-variable": "fmt",
    "shell-true": "fmt",
    "shell-via-interpreter": "fmt",
    "inner-html": "fmt",
    "document-write": "fmt",
    "insert-html": "fmt",
}


def _builders(unit: str, hits: list[str], scope: Scope, at: int) -> list[int]:
    tables = {_BUILT_INPUT[h] for h in hits if h in _BUILT_INPUT}
    out = []
    names = {
        ".".join(parts[:k])
        for n in IDENT.findall(unit)
        for parts in [n.split(".")]
        for k in range(1, len(parts) + 1)
    }
    for name in names if tables else ():
        for table in tables:
            where = scope.built(table, name)
            if where is not None and 0 <= where < at:
                out.append(where)
    return out
