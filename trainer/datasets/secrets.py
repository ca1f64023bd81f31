"""Secret and PII scrubbing: every hit becomes a typed placeholder and is reported by line and kind.

Three layers, in order, each on what the one before left:

1. Provider rules: Betterleaks' several hundred token formats (appliance.secret_rules, shared with
   the serving response filter). A hit is replaced by `<SECRET:rule-id>` and reported as the
   rule id ("github-fine-grained-pat").
2. Yelp's detect-secrets as a second net: its keyword and high-entropy plugins (and its vendor
   plugins), with its false-positive heuristics, run line by line only where a plugin could
   possibly fire: each plugin's own patterns (or, for the keyword and entropy plugins, a superset
   of them) are first searched over the whole file, which is C-speed, and only the lines they hit
   go through the plugins.
3. Hearth's own patterns (shared too): emails, IPv4 addresses, URLs with a password in them,
   connection-string passwords and private-key blocks.

Values never leave this module: a hit carries the line number and the kind, not the secret.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from itertools import accumulate

from appliance.secret_rules import (
    CONNECTION_PASSWORD,
    IPV4,
    IPV4_EXACT,
    PLACEHOLDER_VALUE,
    PRIVATE_KEY_BLOCK,
    RESERVED_EMAIL_DOMAIN,
    URL_CREDENTIALS,
    emails,
    rule_placeholder,
    rule_set,
)

PLACEHOLDERS = {
    "Private Key": "<PRIVATE_KEY>",
    "Secret Keyword": "<PASSWORD>",
    "Basic Auth Credentials": "<PASSWORD>",
    "URL Credentials": "<PASSWORD>",
    "Connection String Password": "<PASSWORD>",
    "Email Address": "<EMAIL>",
    "IP Address": "<IP>",
}
DEFAULT_PLACEHOLDER = "<SECRET>"

# detect-secrets' IP plugin reports public addresses only; the IP regex below covers private ones too.
_SKIPPED_PLUGINS = {"IPPublicDetector"}
_ENTROPY_PLUGINS = {"Base64HighEntropyString", "HexHighEntropyString"}

_PLACEHOLDER_VALUE = PLACEHOLDER_VALUE
# A long hex or base64 string next to one of these words is a checksum, not a credential.
_HASH_CONTEXT = re.compile(
    r"sha\d*|md5|hash|digest|checksum|integrity|commit|revision|etag|fingerprint|nonce|uuid|guid",
    re.IGNORECASE,
)
# Every pattern of these plugins requires one of these words (checked at start-up for the keywords).
_CREDENTIAL_WORDS = re.compile(r"key|pw|pass|token|secret|contrase|cloudant|softlayer")
_CREDENTIAL_WORD_PLUGINS = {
    "KeywordDetector",
    "CloudantDetector",
    "IbmCloudIamDetector",
    "IbmCosHmacDetector",
    "SoftlayerDetector",
}
# Literal prefixes of plugins whose own patterns are slow over a whole file.
_GATES = {
    "ArtifactoryDetector": r"AKC[a-zA-Z0-9]{10}|AP[\dABCDEF][a-zA-Z0-9]{8}",
    "MailchimpDetector": r"-us[0-9]",
    "TelegramBotTokenDetector": r"\d:[0-9A-Za-z_-]{35}",
}
# A keyword's value that names a field ("password1", "usable_password") or is a prefix
# ("django-insecure-"), not a password.
_FIELD_NAME = re.compile(r"(?=[a-z])[a-z0-9_]*(?:pass|secret|key|token|pwd)[a-z0-9_]*|[\w.-]+[-_]")
_VERSION_CONTEXT = re.compile(r"version|\bv\d", re.IGNORECASE)
# What an earlier layer wrote: a later one must not take part of it for a value.
_PLACEHOLDER_TEXT = re.compile(r"<SECRET:[\w.-]+>|<(?:PASSWORD|PRIVATE_KEY|EMAIL|IP|SECRET)>")


@dataclass(frozen=True)
class SecretHit:
    line: int  # 1-based
    kind: str


class SecretScrubber:
    """Built once per dataset (plugin set-up costs a few milliseconds), then `scrub` per file."""

    def __init__(self, *, hearth_rules: bool = True) -> None:
        self.rules = rule_set(hearth_rules)
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.base import RegexBasedDetector
        from detect_secrets.plugins.keyword import DENYLIST
        from detect_secrets.settings import get_settings

        # Verification would call the vendors' APIs over the network: never, on an air-gapped box.
        get_settings().disable_filters(
            "detect_secrets.filters.common.is_ignored_due_to_verification_policies"
        )
        self.checks: list[tuple[object, list[re.Pattern], bool]] = []
        # Vendor-specific plugins first, so a GitHub token is reported as one and not as "high entropy".
        order = {"KeywordDetector": 1, **dict.fromkeys(_ENTROPY_PLUGINS, 2)}
        classes = get_mapping_from_secret_type_to_class().values()
        for cls in sorted(classes, key=lambda c: (order.get(c.__name__, 0), c.__name__)):
            name = cls.__name__
            if name in _SKIPPED_PLUGINS:
                continue
            plugin = cls()
            lowered = False
            if name in _CREDENTIAL_WORD_PLUGINS:
                # Their patterns all require one of these words; a plain search of the lowered
                # text is ten times faster than their case-insensitive patterns over a whole file.
                assert name != "KeywordDetector" or all(_CREDENTIAL_WORDS.search(w) for w in DENYLIST)
                prefilter, lowered = [_CREDENTIAL_WORDS], True
            elif name == "Base64HighEntropyString":
                # entropy > 4.5 bits needs more than 22 distinct characters
                prefilter = [re.compile(r"['\"][A-Za-z0-9+/\\_=-]{20,}['\"]")]
            elif name == "HexHighEntropyString":
                prefilter = [re.compile(r"['\"][0-9a-fA-F]{9,}['\"]")]
            elif name in _GATES:
                prefilter = [re.compile(_GATES[name])]
            elif isinstance(plugin, RegexBasedDetector):
                prefilter = list(plugin.denylist)
            else:  # a plugin we know nothing about: run it on every line
                prefilter = [re.compile(r"^", re.MULTILINE)]
            self.checks.append((plugin, prefilter, lowered))

    def scrub(self, text: str, filename: str) -> tuple[str, list[SecretHit]]:
        """Return the text with every secret replaced by its placeholder, and the hits."""
        hits: list[SecretHit] = []
        text = self._rules_scrub(text, filename, hits)
        lines: list[str] | None = None
        starts: list[int] = []
        candidates: dict[int, list[object]] = {}
        has_private_key = False
        lowered_text: str | None = None
        seen: dict[tuple[re.Pattern, bool], list[int]] = {}
        for plugin, patterns, lowered in self.checks:
            for pattern in patterns:
                positions = seen.get((pattern, lowered))
                if positions is None:
                    if lowered:
                        if lowered_text is None:
                            lowered_text = text.lower()
                            if len(lowered_text) != len(text):  # a few Unicode letters change length
                                lowered_text = text.encode("ascii", "replace").decode().lower()
                        target = lowered_text
                    else:
                        target = text
                    positions = seen[(pattern, lowered)] = [m.start() for m in pattern.finditer(target)]
                if not positions:
                    continue
                if lines is None:
                    lines = text.split("\n")
                    starts = [0, *accumulate(len(line) + 1 for line in lines)]
                for pos in positions:
                    index = bisect.bisect_right(starts, pos) - 1
                    plugins = candidates.setdefault(index, [])
                    if plugin not in plugins:
                        plugins.append(plugin)
        if candidates:
            assert lines is not None
            for index in sorted(candidates):
                line = lines[index]
                for plugin in candidates[index]:
                    for value, kind in self._plugin_hits(plugin, filename, line, index + 1):
                        if kind == "Private Key":
                            has_private_key = True
                            continue  # the whole block is replaced below
                        line, n = _replace_value(line, value, PLACEHOLDERS.get(kind, DEFAULT_PLACEHOLDER))
                        if n:
                            hits.append(SecretHit(index + 1, kind))
                lines[index] = line
            text = "\n".join(lines)
        text = self._regex_scrub(text, hits)
        if has_private_key or "PRIVATE KEY-----" in text:
            text = self._private_keys_scrub(text, hits)
        hits.sort(key=lambda h: h.line)
        return text, hits

    def _rules_scrub(self, text: str, filename: str, hits: list[SecretHit]) -> str:
        spans: list[list] = []  # [start, end, rule], merged where two rules take the same value
        for hit in self.rules.scan(text, filename):
            if spans and hit.secret_start < spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], hit.secret_end)
                continue
            spans.append([hit.secret_start, hit.secret_end, hit.rule])
        if not spans:
            return text
        out, last = [], 0
        for start, end, rule in spans:
            hits.append(SecretHit(text.count("\n", 0, start) + 1, rule))
            out.append(text[last:start])
            out.append(PLACEHOLDERS["Private Key"] if rule == "private-key" else rule_placeholder(rule))
            last = end
        out.append(text[last:])
        return "".join(out)

    def _plugin_hits(self, plugin, filename: str, line: str, number: int):
        from detect_secrets.filters import heuristic

        if (
            len(line) > 5000
        ):  # the keyword regexes backtrack badly on huge lines; such files are minified anyway
            line = line[:5000]
        found = plugin.analyze_line(filename=filename, line=line, line_number=number)
        if not found:
            return
        name = type(plugin).__name__
        kind = next(iter(found)).type
        if kind == "Private Key":
            yield "", kind
            return
        if name in _ENTROPY_PLUGINS or name == "KeywordDetector" or not hasattr(plugin, "denylist"):
            values = [secret.secret_value or "" for secret in found]
        else:
            # A vendor plugin reports the first group of its pattern, which for some is only the
            # token's prefix ("ghp"); scrub the whole token instead.
            values = [_token_of(m, line) for pattern in plugin.denylist for m in pattern.finditer(line)]
        indirect = name == "KeywordDetector" and heuristic.is_indirect_reference(line)
        unmarked = _PLACEHOLDER_TEXT.sub("\0", line) if "<" in line else line
        for value in values:
            if (
                len(value) < 4
                or value not in unmarked  # a piece of a placeholder the provider rules wrote
                or indirect
                or heuristic.is_sequential_string(value)
                or heuristic.is_potential_uuid(value)
                or heuristic.is_likely_id_string(value, line, plugin)
                or heuristic.is_templated_secret(value)
                or heuristic.is_prefixed_with_dollar_sign(value)
                or heuristic.is_not_alphanumeric_string(value)
                or _PLACEHOLDER_VALUE.search(value)
                or (name in _ENTROPY_PLUGINS and _HASH_CONTEXT.search(line))
                or (name == "KeywordDetector" and _FIELD_NAME.fullmatch(value))
            ):
                continue
            yield value, kind

    def _regex_scrub(self, text: str, hits: list[SecretHit]) -> str:
        if "://" in text:
            text = _sub_group(URL_CREDENTIALS, 2, text, "URL Credentials", hits, _password_like)
        if "=" in text:
            text = _sub_group(
                CONNECTION_PASSWORD, 1, text, "Connection String Password", hits, _password_like
            )
        if "@" in text:
            text = _emails_scrub(text, hits)
        if "." in text:
            text = _sub_group(IPV4, 0, text, "IP Address", hits, _ip_like)
        return text

    def _private_keys_scrub(self, text: str, hits: list[SecretHit]) -> str:
        out, last = [], 0
        for match in PRIVATE_KEY_BLOCK.finditer(text):
            hits.append(SecretHit(text.count("\n", 0, match.start()) + 1, "Private Key"))
            out.append(text[last : match.start()])
            out.append(PLACEHOLDERS["Private Key"])
            last = match.end()
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)


_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_+/=.-]*")


def _token_of(match: re.Match, line: str) -> str:
    """The secret in a vendor pattern's match: its last group when that is long enough, else the
    whole match, extended to the end of the token (a JWT's pattern stops before the signature)."""
    groups = [g for g in match.groups() if g]
    if groups and len(groups[-1]) >= 8:
        return groups[-1]
    tail = _TOKEN_TAIL.match(line, match.end())
    return line[match.start() : tail.end() if tail else match.end()]


def _replace_value(line: str, value: str, placeholder: str) -> tuple[str, int]:
    if not value:
        return line, 0
    new, n = re.subn(r"(?<![A-Za-z0-9])" + re.escape(value) + r"(?![A-Za-z0-9])", placeholder, line)
    if not n and value in line:
        new, n = line.replace(value, placeholder), line.count(value)
    return new, n


def _sub_group(pattern: re.Pattern, group: int, text: str, kind: str, hits: list[SecretHit], keep_if) -> str:
    """Replace `group` of each match with the kind's placeholder unless `keep_if` says it is harmless."""
    placeholder = PLACEHOLDERS[kind]
    out, last = [], 0
    for match in pattern.finditer(text):
        if not keep_if(match, text):
            continue
        start, end = match.span(group)
        out.append(text[last:start])
        out.append(placeholder)
        last = end
        hits.append(SecretHit(text.count("\n", 0, start) + 1, kind))
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def _password_like(match: re.Match, text: str) -> bool:
    value = match.group(match.lastindex or 0)
    return len(value) >= 3 and not _PLACEHOLDER_VALUE.search(value)


def _emails_scrub(text: str, hits: list[SecretHit]) -> str:
    out, last = [], 0
    for start, end, domain in emails(text):
        if start < last or RESERVED_EMAIL_DOMAIN.search(domain):
            continue
        before = text[max(0, start - 2) : start]
        if (
            before == "//"
            or before[-1:] in {":", "/", "."}
            or text[start : text.index("@", start)].lower() in {"git", "noreply"}
        ):
            continue  # the user part of a URL (handled above), a decorator path, or a service account
        out.append(text[last:start])
        out.append(PLACEHOLDERS["Email Address"])
        last = end
        hits.append(SecretHit(text.count("\n", 0, start) + 1, "Email Address"))
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def _ip_like(match: re.Match, text: str) -> bool:
    value = match.group(0)
    start, end = match.span()
    if text[start - 1 : start].isalnum() or text[start - 1 : start] == "." or not IPV4_EXACT.fullmatch(value):
        return False
    if (
        text[end : end + 1].isalnum()
        or text[end : end + 1] == "_"
        or (text[end : end + 1] == "." and text[end + 1 : end + 2].isdigit())
    ):
        return False
    if (
        value.startswith(("127.", "0.", "255.", "192.0.2.", "198.51.100.", "203.0.113."))
        or value == "1.0.0.0"
    ):
        return False  # loopback, unspecified, netmasks and the documentation ranges
    line_start = text.rfind("\n", 0, start) + 1
    return not _VERSION_CONTEXT.search(text, line_start, start)
