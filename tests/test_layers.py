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


# Inside trainer/: the shared tools, the rows, then each stage in the order the pipeline runs them,
# then what drives them. A module may import its own part and the parts before it, never one after.
TRAINER_ORDER = [
    "tools",
    "models",
    "mirrors",
    "basemodels",
    "context",
    "datasets",
    "training",
    "export",
    "versions",
    "evaluation",
    "pipeline",
    "watchdog",
    "tasks",
    "management",
]
TRAINER_FREE = {"__init__", "apps", "migrations"}  # package plumbing: checked by the four-layer rule only


def _trainer_part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _trainer_imports(path: Path) -> list[tuple[int, str]]:
    """Modules under trainer/ that `path` imports; `from trainer import x` counts as trainer.x."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("trainer.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "trainer":
                found += [(node.lineno, f"trainer.{a.name}") for a in node.names]
            elif node.module.startswith("trainer."):
                found.append((node.lineno, node.module))
    return found


def stage_order_violations(root: Path = ROOT) -> list[str]:
    rank = {name: i for i, name in enumerate(TRAINER_ORDER)}
    bad = []
    for path in sorted((root / "trainer").rglob("*.py")):
        rel = path.relative_to(root / "trainer")
        part = rel.parts[0].removesuffix(".py")
        if part in TRAINER_FREE:
            continue
        if part not in rank:
            bad.append(f"trainer/{rel}: trainer/{part} has no place in TRAINER_ORDER")
            continue
        for lineno, module in _trainer_imports(path):
            target = _trainer_part(module)
            if target not in rank:
                bad.append(f"trainer/{rel}:{lineno} imports {module}, which has no place in TRAINER_ORDER")
            elif rank[target] > rank[part]:
                bad.append(f"trainer/{rel}:{lineno} imports {module} ({part} comes before {target})")
    return bad


def test_trainer_imports_follow_the_stage_order():
    assert stage_order_violations() == []


def test_the_stage_order_check_sees_a_violation(tmp_path):
    (tmp_path / "trainer" / "tools").mkdir(parents=True)
    (tmp_path / "trainer" / "tools" / "gguf.py").write_text(
        "def f():\n    from trainer.export import services\n"
    )
    (tmp_path / "trainer" / "models").mkdir()
    (tmp_path / "trainer" / "models" / "x.py").write_text("from trainer import pipeline\n")
    assert stage_order_violations(tmp_path) == [
        "trainer/models/x.py:1 imports trainer.pipeline (models comes before pipeline)",
        "trainer/tools/gguf.py:2 imports trainer.export (tools comes before export)",
    ]
