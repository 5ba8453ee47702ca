"""The floor plan holds: no import cycle (function-level imports included), the runtime layer
(export/) imports no torch and no zoo, the product imports nothing from the lab, and no module
imports another module's private names or re-exports another module's names.

The checks live in tests/structure.py (`python tests/structure.py` lists every violation).
"""
import structure as S


def test_find_cycle_by_hand():
    assert S.find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert S.find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_graph_sees_relative_and_function_level_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "zoo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n    return g\n")
    monkeypatch.setattr(S, "ROOT", tmp_path)
    monkeypatch.setattr(S, "PACKAGES", ("zoo",))
    g = S.import_graph()
    assert g["zoo.a"] == {"zoo.b"} and g["zoo.b"] == {"zoo.a"}
    assert S.find_cycle(g) == ["zoo.a", "zoo.b", "zoo.a"]


def test_checks_catch_wrong_way_private_and_reexported_imports(tmp_path, monkeypatch):
    for pkg in ("zoo", "export"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "zoo" / "m.py").write_text("def _hidden():\n    return 1\n\nX = 2\n")
    (tmp_path / "export" / "r.py").write_text(
        "def f():\n    import torch\n    from zoo.m import _hidden\n    return torch, _hidden\n")
    (tmp_path / "export" / "s.py").write_text("from zoo.m import X\n")
    monkeypatch.setattr(S, "ROOT", tmp_path)
    monkeypatch.setattr(S, "PACKAGES", ("zoo", "export"))
    layers = S.layer_violations()
    assert any("export/r.py:2 imports torch" in v for v in layers)
    assert any("imports zoo.m._hidden" in v for v in layers)
    assert any("private name zoo.m._hidden" in v for v in S.private_imports())
    assert any("re-exports X" in v for v in S.reexports())


def test_no_import_cycle_among_project_modules():
    cycle = S.find_cycle(S.import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_runtime_layer_imports_no_torch_and_no_zoo():
    bad = S.layer_violations()
    assert not bad, "\n".join(bad)


def test_no_private_names_across_modules():
    bad = S.private_imports(extra_files=S.test_files())
    assert not bad, "\n".join(bad)


def test_no_reexports():
    bad = S.reexports()
    assert not bad, "\n".join(bad)

