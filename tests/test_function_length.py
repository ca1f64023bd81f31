"""No function runs past 80 lines outside tests and migrations: a longer one is split into named
steps that say what each part does (a benchmark series: what each part measures)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("appliance", "trainer", "inference", "webui", "benchmarks", "packaging")
MAX_LINES = 80


def long_functions(folder: Path, limit: int = MAX_LINES) -> list[str]:
    """'file:function (N lines)' for every function or method in `folder`'s Python files over `limit`."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        if "migrations" in path.relative_to(folder).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(folder)}:{node.name} ({lines} lines)")
    return found


def test_the_check_sees_a_long_function(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    (tmp_path / "bench_x.py").write_text(f"def short():\n    pass\n\n\ndef series():\n{body}")
    assert long_functions(tmp_path) == [f"bench_x.py:series ({MAX_LINES + 1} lines)"]


def test_every_function_is_short():
    assert [f"{package}/{found}" for package in PACKAGES for found in long_functions(ROOT / package)] == []
