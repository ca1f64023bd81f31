"""Source languages recognised by file extension."""

from __future__ import annotations

from pathlib import PurePosixPath

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript",
    ".java": "java", ".kt": "kotlin", ".scala": "scala",
    ".go": "go", ".rs": "rust", ".rb": "ruby", ".php": "php", ".cs": "csharp", ".swift": "swift",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".sh": "shell", ".bash": "shell", ".sql": "sql", ".lua": "lua", ".r": "r", ".jl": "julia",
    ".html": "html", ".css": "css", ".scss": "css", ".vue": "vue", ".dart": "dart",
    ".md": "markdown", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
}
MAKEFILES = {"Makefile": "makefile", "Dockerfile": "dockerfile"}


def language_of(path: str) -> str | None:
    p = PurePosixPath(path)
    return MAKEFILES.get(p.name) or EXTENSIONS.get(p.suffix.lower())
