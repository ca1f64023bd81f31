"""Imports point one way: appliance < trainer < inference < webui (DESIGN.md, "Shape of the code")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["appliance", "trainer", "inference", "webui"]


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement in `path` names, lazy (inside functions) ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def layer_violations(root: Path = ROOT) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            for lineno, module in _imports(path):
                target = module.split(".")[0]
                if target in rank and rank[target] > rank[layer]:
                    bad.append(f"{path.relative_to(root)}:{lineno} imports {module} ({layer} < {target})")
    return bad


def test_imports_point_one_way():
    assert layer_violations() == []


def test_the_check_sees_a_violation(tmp_path):
    (tmp_path / "appliance").mkdir()
    (tmp_path / "appliance" / "x.py").write_text("def f():\n    from inference.engine import server\n")
    for layer in LAYERS[1:]:
        (tmp_path / layer).mkdir()
    assert layer_violations(tmp_path) == ["appliance/x.py:2 imports inference.engine (appliance < inference)"]
