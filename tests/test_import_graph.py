"""The package's import graph, read from the source with ``ast``: no module imports itself through others (a
cycle, even one held together by imports inside functions), and no private name (a leading underscore) is
imported from another module; data flows one way (docs/design.md §5)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "paindiffusion"


def module_name(path: Path) -> str:
    parts = ("paindiffusion", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import of the package in module ``name``, at any
    depth (imports inside functions count: they run too)."""
    path = MODULES[name]
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "paindiffusion"]
        elif isinstance(node, ast.ImportFrom):
            base = here.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            if target.split(".")[0] != "paindiffusion":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub, "", node.lineno) if sub in MODULES else (target, a.name, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports(m) if t in MODULES and t != m} for m in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_relative_function_local_and_package_imports():
    edges = graph()
    assert "paindiffusion.facespace" in edges["paindiffusion.sequence"]  # from .facespace import ...
    assert "paindiffusion.evaluation.metrics" in edges["paindiffusion.evaluation.targets"]  # from . import metrics as M
    assert "paindiffusion.checkpoint" in edges["paindiffusion.cli_live"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_package_modules():
    assert cycles(graph()) == []


def test_no_private_name_is_imported_from_another_module():
    private = [f"{MODULES[m].relative_to(PACKAGE)}:{line} imports {name} from {target}"
               for m in MODULES for target, name, line in imports(m) if name.startswith("_") and target != m]
    assert private == []
