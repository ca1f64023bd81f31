"""Source languages recognised by file extension, well-known file name, or shebang line."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".groovy": "groovy",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".cs": "csharp",
    ".swift": "swift",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".m": "objective-c",
    ".mm": "objective-c",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".ps1": "powershell",
    ".sql": "sql",
    ".lua": "lua",
    ".r": "r",
    ".jl": "julia",
    ".pl": "perl",
    ".pm": "perl",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".clj": "clojure",
    ".fs": "fsharp",
    ".vb": "visualbasic",
    ".proto": "protobuf",
    ".tf": "terraform",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".scss": "css",
    ".less": "css",
    ".vue": "vue",
    ".svelte": "svelte",
    ".dart": "dart",
    ".md": "markdown",
    ".rst": "restructuredtext",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
}
FILENAMES = {
    "Makefile": "makefile",
    "GNUmakefile": "makefile",
    "Dockerfile": "dockerfile",
    "Containerfile": "dockerfile",
    "CMakeLists.txt": "cmake",
    "Jenkinsfile": "groovy",
    "Rakefile": "ruby",
    "Gemfile": "ruby",
    "Vagrantfile": "ruby",
}
# Interpreter in a `#!` line → language, for scripts without an extension (bin/deploy, manage).
INTERPRETERS = {
    "python": "python",
    "python2": "python",
    "python3": "python",
    "pypy": "python",
    "pypy3": "python",
    "sh": "shell",
    "bash": "shell",
    "dash": "shell",
    "zsh": "shell",
    "ksh": "shell",
    "node": "javascript",
    "nodejs": "javascript",
    "deno": "typescript",
    "ts-node": "typescript",
    "ruby": "ruby",
    "perl": "perl",
    "php": "php",
    "lua": "lua",
    "Rscript": "r",
    "pwsh": "powershell",
}
_SHEBANG = re.compile(rb"#![ \t]*(\S+)(?:[ \t]+(?:-\S+[ \t]+)*(\S+))?")
_VERSION = re.compile(r"[\d.]+$")

# Language ids IDEs send (VS Code's, as Continue and Tabby's extensions pass them on) that name one
# of the languages above differently.
IDE_ALIASES = {
    "javascriptreact": "javascript",
    "typescriptreact": "typescript",
    "shellscript": "shell",
    "bat": "batch",
    "c++": "cpp",
    "c#": "csharp",
    "objective-cpp": "objective-c",
    "py": "python",
    "js": "javascript",
    "ts": "typescript",
    "golang": "go",
    "rs": "rust",
}

ALL_LANGUAGES = tuple(sorted(set(EXTENSIONS.values()) | set(FILENAMES.values()) | set(INTERPRETERS.values())))


def language_of(path: str) -> str | None:
    """Language from the file name alone (None when the name says nothing)."""
    p = PurePosixPath(path)
    return FILENAMES.get(p.name) or EXTENSIONS.get(p.suffix.lower())


def language_from_shebang(head: bytes) -> str | None:
    """Language from a `#!` first line: `#!/usr/bin/env python3`, `#!/bin/bash -e`, `#!/usr/bin/env -S node`."""
    if not head.startswith(b"#!"):
        return None
    match = _SHEBANG.match(head.split(b"\n", 1)[0])
    if not match:
        return None
    program = match.group(1).rsplit(b"/", 1)[-1].decode("ascii", "replace")
    if program == "env" and match.group(2):
        program = match.group(2).rsplit(b"/", 1)[-1].decode("ascii", "replace")
    return INTERPRETERS.get(program) or INTERPRETERS.get(_VERSION.sub("", program))


def needs_shebang(path: str) -> bool:
    """Only extensionless files are worth opening to look for a `#!` line."""
    return not PurePosixPath(path).suffix


def language_normalize(*, language: str | None, filepath: str | None) -> str:
    """One language id for what a client sent: its own id (VS Code style) if any, else the file name's;
    "unknown" when neither says. Datasets and usage figures then count the same ids."""
    if language:
        lang = language.strip().lower()[:32]
        return IDE_ALIASES.get(lang, lang)
    return (language_of(filepath) if filepath else None) or "unknown"
