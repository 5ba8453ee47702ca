"""The project's modules import each other without cycles, and the runtime stays torch-free.

Edges are the imports a module runs when it is imported (module level, including inside
try/if blocks); imports inside functions run later, on call, and are how a module reaches a
heavier one lazily, so they are not edges. An import of a package's own ancestors (a submodule
importing its package) is not an edge either: Python resolves those without a cycle.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "export")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            out[_module_name(path)] = path
    return out


def _resolve(name: str, modules) -> str:
    """The most specific project module for a dotted name ("zoo.metrics.X" -> the module if X is
    one, else the package)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _module_level_imports(tree):
    """Import nodes executed at import time: not inside a def or lambda."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                stack.append(child)


def import_graph():
    modules = _modules()
    graph = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        base = mod if is_pkg else mod.rpartition(".")[0]
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    anchor = base
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    prefix = f"{anchor}.{node.module}" if node.module else anchor
                else:
                    prefix = node.module
                targets = [f"{prefix}.{a.name}" for a in node.names]
            for t in targets:
                dep = _resolve(t, modules)
                if dep and dep != mod and not mod.startswith(dep + "."):
                    graph[mod].add(dep)
    return graph


def find_cycle(graph):
    """One cycle as a list of modules, or None (depth-first search with colours)."""
    colour = {m: 0 for m in graph}
    stack = []

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if colour[d] == 1:
                return stack[stack.index(d):] + [d]
            if colour[d] == 0:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        colour[m] = 2
        return None

    for m in sorted(graph):
        if colour[m] == 0:
            found = visit(m)
            if found:
                return found
    return None


def test_find_cycle_by_hand():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_graph_sees_relative_imports():
    g = import_graph()
    assert "zoo.templates" in g["zoo.ecloss"]              # from . import templates as ...
    assert "export._common" in g["export.runtime"]         # from ._common import (...)


def test_no_import_cycle_among_project_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", ["export.runtime", "export.model_dir", "export.metadata",
                                    "export.images", "export._common"])
def test_runtime_modules_do_not_import_the_torch_side(module):
    g = import_graph()
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += g[m]
    assert not any(m.startswith("zoo") or m == "export.onnx_export" for m in seen), sorted(seen)
