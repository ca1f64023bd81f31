"""Reading a line of code the way the insecure-code rules need: string literals and whether a
value is spliced into one, a call's arguments, and which variables were built by formatting
(in the suggestion's earlier lines, or the prefix's last ones)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A line that is a comment (nothing in it runs).
COMMENT = re.compile(r"\s*(?:#(?!include|!|\[)|//|/\*|\*(?!\w)|--\s|<!--)")
_PREFIX_LINES = 40  # lines of the prefix read for variables built by formatting

# ---------------------------------------------------------------- string literals and formatting

# A string literal on one line: an optional prefix (f, r, b, u; C#'s $ and @), the quote, the body.
# An unclosed one runs to the end of the line.
_STRING = re.compile(
    r"""(?<![\w$@])(?P<pre>[rRbBfFuU]{1,2}(?=["'])|\$@?|@\$?)?"""
    r"""(?P<q>\"\"\"|'''|["'`])(?P<body>(?:\\.|(?!(?P=q))[^\\])*)(?:(?P=q)|$)"""
)
_FSTRING_FIELD = re.compile(r"(?<!\{)\{(?!\{)\s*(?P<name>[^{}]*)\}")
# An f-string field that is safe in SQL: the placeholders of a parameterised IN (...) list.
_PLACEHOLDERS = re.compile(r"(?i)^(?:placeholders?|qmarks|marks|params_?sql|bind_?vars)$")
_DOLLAR_VAR = re.compile(r"(?<![\\$])\$(?:\{|[A-Za-z_])")  # PHP, Kotlin, Dart, Perl, shell
# String placeholders a format call or operator fills (%d and {:d} cannot carry a quote).
_STRING_SLOT = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[svqr]|%\(\w+\)[svr]|\{\d*\}|\{\w+\}")
_FORMAT_CALL_BEFORE = re.compile(
    r"(?:\bSprintf|\bString\.format|\bstring\.Format|\bsprintf|\bformat!|\bstr\.format)\s*\(\s*$"
)
# `+` or PHP's `.` joining a literal to something that is not a literal; `.join(` assembling one.
_CONCAT_AFTER = re.compile(r"""\s*(?:\+(?![+=])\s*(?!["'`])|\.\s*\$|\s\.\s+[A-Za-z_]\w*\s*\()""")
_JOIN_AFTER = re.compile(r"\.join\s*\(")
_CONCAT_BEFORE = re.compile(r"(?:[\w\])]\s*\+|(?:\$\w+(?:\[[^\]]*\])?|\))\s*\.)\s*$")
_PERCENT_AFTER = re.compile(r"\s*%(?!=)\s*[\w(\[{]")
_FORMAT_AFTER = re.compile(r"\.\s*(?:format|formatted)\s*\(")

SQL_TEXT = re.compile(
    r"(?i)\bselect\b.+?\bfrom\b|\bselect\s+\*|\binsert\s+(?:or\s+\w+\s+)?into\b|\bupdate\s+\S+\s+set\b"
    r"|\bdelete\s+from\b|\b(?:replace|merge)\s+into\b|\b(?:drop|alter|create|truncate)\s+table\b"
    r"|\bwhere\s+[\w.`\"\[\]]+\s*(?:=|<|>|!=|<>|\blike\b|\bin\b|\bis\b)|\border\s+by\b"
)


def _interpolated(pre: str, q: str, body: str, *, sql: bool) -> bool:
    """True when the literal itself splices values in (f-strings, template literals, #{}, $var)."""
    pre = pre or ""
    if "f" in pre.lower():
        fields = [m["name"].strip() for m in _FSTRING_FIELD.finditer(body)]
        return any(not (sql and _PLACEHOLDERS.match(name)) for name in fields)
    if q == "`":
        return "${" in body or "#{" in body
    if pre.startswith("$") or pre == "@$":
        return bool(_FSTRING_FIELD.search(body))
    if q in ('"', '"""'):
        return "#{" in body or bool(_DOLLAR_VAR.search(body))
    return False


def strings(text: str) -> list[re.Match]:
    return list(_STRING.finditer(text))


def formatted(text: str, *, sql: bool = False, joins: bool = True) -> bool:
    """Does `text` (a call's arguments, an assignment's right side) build a string from values?

    Interpolation, `+` or PHP's `.` next to a literal, `%` with a string slot, `.format(`, a
    Sprintf-style call whose format has a string slot, or (with `joins`) a literal's `.join(`.
    With `sql`, a literal must read as SQL.
    """
    found = strings(text)
    if not found:
        return False
    if sql and not any(SQL_TEXT.search(m["body"]) for m in found):
        return False
    for m in found:
        pre, q, body = m["pre"], m["q"], m["body"]
        if _interpolated(pre, q, body, sql=sql):
            return True
        after, before = text[m.end() :], text[: m.start()]
        if (
            _CONCAT_AFTER.match(after)
            or _CONCAT_BEFORE.search(before)
            or (joins and _JOIN_AFTER.match(after))
        ):
            return True
        if _STRING_SLOT.search(body):
            if _PERCENT_AFTER.match(after) and not literal(after.lstrip()[1:].split(")")[0].strip("( ,")):
                return True
            fill = _FORMAT_AFTER.match(after)
            if fill and not _all_literal(call_args(after[fill.end() :], 8)):
                return True
            rest = after.lstrip()
            if (
                _FORMAT_CALL_BEFORE.search(before)
                and rest.startswith(",")
                and not _all_literal(call_args(rest[1:], 8))
            ):
                return True
    return False


def _all_literal(args: list[str]) -> bool:
    return bool(args) and all(literal(a) for a in args)


def masked_strings(text: str) -> str:
    """`text` with every string literal's body blanked (same length): brackets and sinks in code only."""
    return _STRING.sub(lambda m: m["q"] + " " * (len(m.group()) - 2 * len(m["q"])) + m["q"], text)


def call_args(text: str, limit: int = 4) -> list[str]:
    """The first `limit` top-level arguments of the call whose "(" came just before `text`."""
    masked, args, depth, start = masked_strings(text), [], 0, 0
    for i, ch in enumerate(masked):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                args.append(text[start:i])
                return args[:limit]
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i])
            start = i + 1
            if len(args) == limit:
                return args
    args.append(text[start:])
    return [a for a in args if a.strip()][:limit]


def literal(arg: str) -> bool:
    """A plain string literal (or several, juxtaposed or joined by +), nothing spliced in."""
    arg = arg.strip()
    if not arg or formatted(arg):
        return False
    return not _STRING.sub("", arg).replace("+", "").replace(".", "").strip()


def open_parens(text: str) -> int:
    """How many ( and [ are still open at the end of `text` (braces are blocks as often as not)."""
    if text.count("(") + text.count("[") <= text.count(")") + text.count("]") and not any(
        q in text for q in "\"'`"
    ):
        return text.count("(") + text.count("[") - text.count(")") - text.count("]")
    masked = masked_strings(text)
    return masked.count("(") + masked.count("[") - masked.count(")") - masked.count("]")


# ---------------------------------------------------------------- variables built by formatting

_ASSIGN = re.compile(
    r"^\s*(?:(?:[\w<>\[\]:*&,]+)\s+)*?[*&]?(?P<var>\$?[A-Za-z_][\w.]*)(?:\s*\[[^\]=]*\])?"
    r"(?:\s*:\s*[\w<>\[\]|. ]+)?\s*(?P<op>:=|\+=|\.=|=)(?!=)\s*(?P<rhs>.+)$"
)
_C_BUILD = re.compile(
    r"\b(?P<fn>v?s(?:n)?printf|strn?cat|strn?cpy)\s*\(\s*&?(?P<var>[A-Za-z_]\w*)\s*,(?P<rest>.*)"
)
IDENT = re.compile(r"(?<![\w$])\$?[A-Za-z_][\w.]*")


def learnable(line: str) -> bool:
    """Could `line` build (or rebuild) a variable? Assignments and C's string builders."""
    return "=" in line or "printf" in line or "strcat" in line or "strcpy" in line


@dataclass
class Taint:
    """Variables assigned a formatted string (`fmt`) or formatted SQL (`sql`), each with where it
    was built: the offset of its line in the suggestion, or -1 for the prefix."""

    fmt: dict[str, int] = field(default_factory=dict)
    sql: dict[str, int] = field(default_factory=dict)
    sqlish: set[str] = field(default_factory=set)  # assigned a SQL literal (a later `+=` taints it)
    cleared: set[str] = field(default_factory=set)  # reassigned from something else


class Scope:
    """What the suggestion's earlier lines built, over what the prefix's last lines built; the
    prefix is read only when a sink asks about a variable."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.local = Taint()
        self._base: Taint | None = None

    def _prefix(self) -> Taint:
        if self._base is None:
            self._base = Taint()
            # The prefix's last line is not read here: it is judged with the suggestion's first.
            lines = self.prefix[-4000:].split("\n")[:-1]
            for line in lines[-_PREFIX_LINES:]:
                if learnable(line) and not COMMENT.match(line):
                    _learn(self._base, line, -1, self._base)
        return self._base

    def built(self, table: str, name: str) -> int | None:
        """Where `name` was built by formatting (table "fmt") or as formatted SQL ("sql"), or None."""
        name = arg_name(name)
        if not IDENT.fullmatch(name):
            return None
        local = getattr(self.local, table)
        if name in local:
            return local[name]
        if name in self.local.cleared or not self.prefix:
            return None
        return getattr(self._prefix(), table).get(name)

    def sqlish(self, name: str) -> bool:
        if name in self.local.sqlish:
            return True
        return bool(self.prefix) and name not in self.local.cleared and name in self._prefix().sqlish

    def learn(self, line: str, at: int) -> None:
        _learn(self.local, line, at, self)


def _learn(t: Taint, line: str, at: int, scope: Taint | Scope) -> None:
    sqlish = scope.sqlish if isinstance(scope, Scope) else (lambda name: name in scope.sqlish)
    m = _ASSIGN.match(line)
    if m:
        var, op, rhs = m["var"], m["op"], m["rhs"]
        if op in ("=", ":="):
            t.fmt.pop(var, None)
            t.sql.pop(var, None)
            t.sqlish.discard(var)
            t.cleared.add(var)
            if formatted(rhs):
                t.fmt[var] = at
                if formatted(rhs, sql=True):
                    t.sql[var] = at
            elif any(SQL_TEXT.search(s["body"]) for s in strings(rhs)):
                t.sqlish.add(var)
        elif not literal(rhs):  # += or .= of something not a plain literal
            t.fmt.setdefault(var, at)
            if sqlish(var) or formatted(rhs, sql=True):
                t.sql.setdefault(var, at)
        return
    m = _C_BUILD.search(line)
    if m:
        var, rest = m["var"], m["rest"]
        if m["fn"].endswith("printf"):
            args = call_args(rest, 8)
            fmt = next((k for k, a in enumerate(args) if strings(a)), None)
            if fmt is not None and _STRING_SLOT.search(args[fmt]) and not _all_literal(args[fmt + 1 :]):
                t.fmt.setdefault(var, at)
                if SQL_TEXT.search(args[fmt]):
                    t.sql.setdefault(var, at)
        else:
            args = call_args(rest, 1)
            source = args[0] if args else ""
            if not literal(source):
                t.fmt.setdefault(var, at)
                if sqlish(var):
                    t.sql.setdefault(var, at)
            elif any(SQL_TEXT.search(s["body"]) for s in strings(source)):
                t.sqlish.add(var)


def arg_name(arg: str) -> str:
    arg = arg.strip().lstrip("&*")
    return re.sub(r"\.(?:c_str|data|toString|String)\(\)$", "", arg)
