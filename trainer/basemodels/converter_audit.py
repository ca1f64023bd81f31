"""Which architectures make llama.cpp's HF→GGUF converter trust a model folder's own code.

Read, never run: the converter's `conversion/*.py` is parsed with `ast`. For each text architecture
it registers, the audit follows what the conversion can reach from `__init__`, `write` and
`write_vocab` (the calls `convert_hf_to_gguf.py` makes): `self.x` / `cls.x` / `type(self).x` /
`getattr(self, "x")` resolved along the class's method resolution order, `super().x`, `Klass.x`,
`Klass(...)` and module functions. A "sink" is any call with a `trust_remote_code=` argument that
is not the constant False. The answer is an over-approximation (every branch counts as taken), so
an architecture it calls clean never trusts remote code; one it flags may only do so behind a
condition on the folder's files (see `trainer.tools.architectures` for the two such
conditions Hearth enforces itself).

    python -m trainer.basemodels.converter_audit [--json] [--gated] [CONVERTER_DIR]

prints the clean architectures, then every flagged one with the path that reaches the sink
(`--json`: one object, architecture → path or null; `--gated`: not following the call sites
`GATED_CALLS` guards).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOTS = ("__init__", "write", "write_vocab")


@dataclass
class _Class:
    name: str
    module: str
    bases: list[str]
    methods: dict[str, ast.AST]
    registers: list[str] = field(default_factory=list)


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):  # Generic[...]
        return _base_name(node.value)
    return ""


def _registrations(cls: ast.ClassDef) -> list[str]:
    names: list[str] = []
    for deco in cls.decorator_list:
        if (
            isinstance(deco, ast.Call)
            and isinstance(deco.func, ast.Attribute)
            and deco.func.attr == "register"
            and _base_name(deco.func.value) == "ModelBase"
        ):
            names.extend(
                a.value for a in deco.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
    return names


def _is_sink(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and any(
        kw.arg == "trust_remote_code" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False)
        for kw in node.keywords
    )


class _Converter:
    def __init__(self, root: Path):
        self.classes: dict[str, _Class] = {}
        self.functions: dict[str, list[ast.AST]] = {}
        self.text_map: dict[str, str] = {}
        for source in sorted((root / "conversion").glob("*.py")):
            tree = ast.parse(source.read_text(errors="replace"), filename=str(source))
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    methods = {
                        n.name: n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                    }
                    self.classes[node.name] = _Class(
                        node.name,
                        source.stem,
                        [_base_name(b) for b in node.bases],
                        methods,
                        _registrations(node),
                    )
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.functions.setdefault(node.name, []).append(node)
                elif (
                    source.stem == "__init__"
                    and isinstance(node, ast.AnnAssign)
                    and _base_name(node.target) == "TEXT_MODEL_MAP"
                    and isinstance(node.value, ast.Dict)
                ):
                    self.text_map = {
                        k.value: v.value
                        for k, v in zip(node.value.keys, node.value.values)
                        if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
                    }
        self._mro: dict[str, list[str]] = {}

    def mro(self, name: str) -> list[str]:
        """C3 linearisation over the converter's own classes (outside bases are left out)."""
        if name not in self._mro:
            bases = [b for b in self.classes[name].bases if b in self.classes]
            seqs = [list(self.mro(b)) for b in bases] + [list(bases)]
            out = [name]
            while any(seqs):
                for seq in seqs:
                    head = seq[0] if seq else None
                    if head and not any(head in s[1:] for s in seqs):
                        break
                else:
                    raise ValueError(f"inconsistent MRO for {name}")
                out.append(head)
                seqs = [s[1:] if s and s[0] == head else s for s in seqs]
            self._mro[name] = out
        return self._mro[name]

    def resolve(self, concrete: str, attr: str, after: str | None = None) -> tuple[str, ast.AST] | None:
        order = self.mro(concrete)
        if after is not None:
            order = order[order.index(after) + 1 :] if after in order else []
        for owner in order:
            if attr in self.classes[owner].methods:
                return owner, self.classes[owner].methods[attr]
        return None

    def is_mmproj(self, name: str) -> bool:
        return "MmprojModel" in self.mro(name)

    def sink_path(self, concrete: str, gated: frozenset[tuple[str, str]] = frozenset()) -> list[str] | None:
        """The chain of functions from a root to a trust_remote_code call, or None if none is reachable.
        `gated` holds call sites (caller "Class.method", callee name) not to follow: each guarded by a
        condition on the folder that the importer enforces."""
        seen: set[tuple[str, str, int]] = set()
        stack: list[tuple[str, str, ast.AST, list[str]]] = []
        for root in ROOTS:
            hit = self.resolve(concrete, root)
            if hit:
                stack.append((concrete, hit[0], hit[1], [f"{hit[0]}.{root}"]))
        while stack:
            ctx, owner, fn, path = stack.pop()
            key = (ctx, owner, id(fn))
            if key in seen:
                continue
            seen.add(key)
            for node in ast.walk(fn):
                if _is_sink(node):
                    return [*path, f"line {node.lineno}: trust_remote_code"]
                for nxt in self._edges(ctx, owner, node):
                    if (f"{owner}.{getattr(fn, 'name', '')}", nxt[3].rsplit(".", 1)[-1]) in gated:
                        continue
                    stack.append((nxt[0], nxt[1], nxt[2], [*path, nxt[3]]))
        return None

    def _edges(self, ctx: str, owner: str, node: ast.AST):
        def method(in_ctx: str, attr: str, after: str | None = None, start: str | None = None):
            hit = self.resolve(start or in_ctx, attr, after)
            if hit:
                yield in_ctx, hit[0], hit[1], f"{hit[0]}.{attr}"

        if isinstance(node, ast.Attribute):
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                yield from method(ctx, node.attr)
            elif isinstance(value, ast.Call) and _base_name(value.func) == "super":
                after = _base_name(value.args[0]) if value.args else owner
                yield from method(ctx, node.attr, after=after)
            elif isinstance(value, ast.Call) and _base_name(value.func) == "type":
                yield from method(ctx, node.attr)
            elif isinstance(value, ast.Name) and value.id in self.classes:
                yield from method(ctx, node.attr, start=value.id)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
                target, name = node.args[0], node.args[1]
                if (
                    isinstance(target, ast.Name)
                    and target.id in ("self", "cls")
                    and isinstance(name, ast.Constant)
                    and isinstance(name.value, str)
                ):
                    yield from method(ctx, name.value)
            elif isinstance(func, ast.Name) and func.id in self.classes:
                for root in ROOTS:
                    yield from method(func.id, root)
            elif isinstance(func, ast.Name) and func.id in self.functions:
                for fn in self.functions[func.id]:
                    yield ctx, owner, fn, f"{func.id}()"

    def text_architectures(self) -> dict[str, list[str]]:
        """Architecture name → the text classes registering it that convert_hf_to_gguf.py can pick."""
        found: dict[str, list[str]] = {}
        for cls in self.classes.values():
            if self.is_mmproj(cls.name):
                continue
            for arch in cls.registers:
                if arch in self.text_map:
                    found.setdefault(arch, []).append(cls.name)
        return found


def audit(
    converter_root: Path, gated: frozenset[tuple[str, str]] = frozenset()
) -> dict[str, list[str] | None]:
    """Architecture → None if its conversion never reaches trust_remote_code (not following the
    `gated` call sites), else one path that does."""
    conv = _Converter(Path(converter_root))
    result: dict[str, list[str] | None] = {}
    for arch, classes in sorted(conv.text_architectures().items()):
        paths = [p for p in (conv.sink_path(c, gated) for c in classes) if p]
        result[arch] = paths[0] if paths else None
    return result


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    gated: frozenset[tuple[str, str]] = frozenset()
    if "--gated" in args:
        from trainer.tools.architectures import GATED_CALLS

        gated = frozenset(GATED_CALLS)
    args = [a for a in args if a not in ("--json", "--gated")]
    if args:
        root = Path(args[0])
    else:
        import os

        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
        django.setup()
        from trainer.tools.converter import converter_dir

        root = converter_dir()
    result = audit(root, gated)
    if as_json:
        import json

        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"# {root}\n# never trusts remote code:")
    for arch, path in result.items():
        if path is None:
            print(f"    {arch!r},")
    print("# can reach trust_remote_code:")
    for arch, path in result.items():
        if path is not None:
            print(f"#   {arch}: {' -> '.join(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
