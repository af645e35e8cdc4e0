"""No import cycles inside mmcore or an app, counting imports inside functions.

An import hidden in a function body still ties two modules together: it only moves the failure
from import time to the first call. The graph below reads every ``import`` statement of every
module (module level, functions, methods) with :mod:`ast`, resolves relative imports, and fails on
any strongly connected component of more than one module, naming the modules and the lines.

``mmcore.cli`` is the one entry point allowed to import the apps; the apps import mmcore, and
mmcore never imports an app.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mmcore", "apps")
ENTRY_POINTS = {"mmcore.cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is one of our modules (``a.b.func`` -> ``a.b``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _edges(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved and resolved != module:
                out.append((resolved, node.lineno))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], int]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    lines: dict[tuple[str, str], int] = {}
    for module, path in modules.items():
        if module in ENTRY_POINTS:
            continue
        for target, line in _edges(module, path, modules):
            graph[module].add(target)
            lines.setdefault((module, target), line)
    return graph, lines


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    pkg = tmp_path / "mmcore"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import g\n")
    (pkg / "b.py").write_text("def g():\n    from mmcore.a import f  # late, still a cycle\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGES", ("mmcore",))
    graph, _ = _graph()
    assert _cycles(graph) == [["mmcore.a", "mmcore.b"]]


def test_no_import_cycles():
    graph, lines = _graph()
    cycles = _cycles(graph)
    if cycles:
        described = []
        for component in cycles:
            members = set(component)
            hops = [f"{a} -> {b} (line {lines[(a, b)]})" for a in component for b in sorted(graph[a] & members)]
            described.append("; ".join(hops))
        pytest.fail("import cycles:\n  " + "\n  ".join(described))


def test_mmcore_never_imports_an_app():
    graph, lines = _graph()
    leaks = [f"{m} -> {t} (line {lines[(m, t)]})" for m, targets in graph.items() if m.startswith("mmcore")
             for t in targets if t.startswith("apps")]
    assert not leaks, "mmcore imports an app: " + "; ".join(leaks)
