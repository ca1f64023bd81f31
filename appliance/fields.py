"""A model field for artifact paths, stored relative to the instance root (HEARTH_HOME).

Code reads and writes absolute paths as before; the database holds `models/version-00001/x.gguf`,
so an instance directory can move (a restore onto another host, a new mount point). A path outside
the instance (a base model imported in place, say) is stored as it is.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.db import models


class InstancePathField(models.CharField):
    description = "A filesystem path, stored relative to HEARTH_HOME when it lies below it"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 1000)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value, expression, connection):
        return path_absolute(value)

    def to_python(self, value):
        return path_absolute(super().to_python(value))

    def get_prep_value(self, value):
        return path_relative(super().get_prep_value(value))


def _home() -> Path:
    from appliance import paths

    return paths.home()


def path_absolute(value: str | None) -> str | None:
    """The absolute form of a stored path ("" stays "")."""
    if not value or Path(value).is_absolute():
        return value
    return str(_home() / value)


def path_relative(value: str | Path | None) -> str | None:
    """The stored form: relative to the instance root when below it, else unchanged."""
    if not value:
        return value
    path = Path(value)
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(_home()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- globs, and the paths they match


def glob_lines(text: str | None) -> list[str]:
    """Patterns typed one a line in an admin text field: blank lines and `#` comments dropped."""
    lines = (line.strip() for line in (text or "").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# A URI as IDEs send a file's name: `file:` or any `scheme://` (a scheme of one letter is a drive).
_URI = re.compile(r"^(?:file:|[a-z][a-z0-9+.-]+://)", re.IGNORECASE)
# A drive letter, after a Windows device prefix (`//?/` once backslashes are `/`) or a leading `/`.
_DRIVE = re.compile(r"^(?://[?.]/)?/*[a-z]:(?=/|$)", re.IGNORECASE)
# Beyond these no file system has a real path (Linux's PATH_MAX); matching stays cheap below them.
PATH_MAX_CHARS = 4096
PATH_MAX_NAMES = 64


def path_normalize(path: str) -> str:
    """One comparable form of a file's path as an IDE sends it: a URI's path percent-decoded
    (`file:///c%3A/Repo/a.py`), `/` for `\\`, no drive letter, `.` and empty names dropped, `..`
    applied (never above the start), trailing dots and spaces off each name (Windows ignores
    them), Unicode NFC. Case is kept; an absolute path keeps its leading `/`."""
    text = unicodedata.normalize("NFC", path.strip())
    if _URI.match(text):
        text = unicodedata.normalize("NFC", unquote(urlsplit(text).path))
    text = _DRIVE.sub("/", text.replace("\\", "/"), count=1)
    names: list[str] = []
    for name in text.split("/"):
        bare = name.rstrip(" ")
        if bare in ("", "."):
            continue
        if bare == "..":
            if names:
                names.pop()
            continue
        name = name.rstrip(" .")
        if name:
            names.append(name)
    return ("/" if text.startswith("/") else "") + "/".join(names)


def path_excluded(path: str | None, globs: Iterable[str]) -> bool:
    """True when `path`, as any IDE sends it (relative, absolute, Windows, a `file://` URI), matches
    one of the admin's exclusion globs: compared in `path_normalize`'s form, ignoring case.

    A glob matches any tail of the path (`secrets/*.py` matches `/repo/secrets/a.py`), the file name
    alone, or a folder the file is in, so `secrets`, `secrets/` and `**/secrets/**` all cover what
    is in a `secrets` folder; `*` also crosses `/`. While there are globs, a path longer than
    PATH_MAX_CHARS or deeper than PATH_MAX_NAMES counts as excluded: it names no real file, and
    matching every part of it would cost a request's worth of time.
    """
    if not path:
        return False
    globs = tuple(globs)
    if len(path) > PATH_MAX_CHARS:
        return _glob_pattern(globs) is not None
    return _excluded(path, globs)


@functools.lru_cache(maxsize=4096)  # an IDE sends the same few paths keystroke after keystroke
def _excluded(path: str, globs: tuple[str, ...]) -> bool:
    pattern = _glob_pattern(globs)
    if pattern is None:
        return False
    clean = _folded(path_normalize(path)).strip("/")
    if not clean:
        return False
    names = clean.split("/")
    if len(names) > PATH_MAX_NAMES:
        return True
    return any(
        pattern.match("/".join(names[start:end]))
        for start in range(len(names))
        for end in range(start + 1, len(names) + 1)
    )


def _folded(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


@functools.lru_cache(maxsize=32)
def _glob_pattern(globs: tuple[str, ...]) -> re.Pattern | None:
    """One regular expression for a glob list (None for none). Leading `/`, `./` and `**/` go (any
    tail is tried), and so does a trailing `/` (a folder covers its contents anyway)."""
    variants = set()
    for glob in globs:
        text = _folded(glob.strip()).replace("\\", "/")
        while True:
            stripped = text.lstrip("/").removeprefix("./").removeprefix("**/")
            if stripped == text:
                break
            text = stripped
        text = text.rstrip("/")
        if text:
            variants.add(text)
    if not variants:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(v)})" for v in sorted(variants)))
