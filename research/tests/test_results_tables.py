"""docs/results.md's tables are generated from the committed per-run records, never typed:
python -m research.results_tables --check fails when one differs (and when a table name is
unknown), and rewriting the committed file changes no byte of it."""
import subprocess
import sys
from pathlib import Path

from research import results_tables

ROOT = Path(__file__).resolve().parents[2]


def _check(doc_text, tmp_path, monkeypatch):
    doc = tmp_path / "results.md"
    doc.write_text(doc_text)
    monkeypatch.setattr(results_tables, "DOC", doc)
    return results_tables.main(["--check"])


def test_committed_tables_match_the_records():
    out = subprocess.run([sys.executable, "-m", "research.results_tables", "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_typed_number_is_caught(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "results.md").read_text()
    start = text.index("<!-- table:remedies-metrics -->")
    row = text.index("| softmax | 3 |", start)
    edited = text[:row] + "| softmax | 3 | 0.999" + text[row + len("| softmax | 3 | 0.847"):]
    assert _check(edited, tmp_path, monkeypatch) == 1
    assert _check(text, tmp_path, monkeypatch) == 0


def test_rewriting_the_committed_doc_changes_nothing(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "results.md").read_bytes()
    doc = tmp_path / "results.md"
    doc.write_bytes(text)
    monkeypatch.setattr(results_tables, "DOC", doc)
    assert results_tables.main([]) == 0
    assert doc.read_bytes() == text


def test_holm_by_hand():
    """Holm on four p-values, by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 gives
    0.02, 0.03, 0.06, 0.04, made monotone: 0.02, 0.03, 0.06, 0.06. None is no test."""
    import pytest

    from research.study_tables import holm
    assert holm([0.01, 0.04, None, 0.03, 0.005]) == pytest.approx(
        [0.03, 0.06, None, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_a_quoted_number_is_caught(tmp_path, monkeypatch):
    """A number of the prose between q: markers that differs from its record fails --check."""
    from research.quoted import QUOTE, quote
    text = (ROOT / "docs" / "results.md").read_text()
    m = next(QUOTE.finditer(text))
    assert m.group("body") == quote(m.group("spec"))
    edited = text[:m.start("body")] + "0.123456" + text[m.end("body"):]
    assert _check(edited, tmp_path, monkeypatch) == 1
    assert _check(text, tmp_path, monkeypatch) == 0


def test_quote_kinds(tmp_path, monkeypatch):
    from research import quoted
    for name, seed, v in (("a", 0, 0.1), ("a", 1, 0.3), ("b", 0, 0.2), ("b", 1, 0.6)):
        d = tmp_path / "f"
        d.mkdir(exist_ok=True)
        (d / f"{name}-s{seed}.json").write_text(
            f'{{"variant": "{name}", "seed": {seed}, "x": {v}}}')
    (tmp_path / "r.json").write_text('{"k": [1.5, {"z": 0.25}]}')
    monkeypatch.setattr(quoted, "RESULTS", tmp_path)
    assert quoted.quote("mean|f|a|x") == "0.200"
    assert quoted.quote("summary|f|a|x|2") == "0.20 +- 0.14"
    assert quoted.quote("values|f|b|x|1") == "0.2, 0.6"
    assert quoted.quote("range|f|a,b|x|1") == "0.2-0.4"
    assert quoted.quote("paired|f|b vs a|x") == "+0.200 +- 0.141"
    assert quoted.quote("diffs|f|b vs a|x|1") == "+0.1, +0.3"
    assert quoted.quote("lower|f|a vs b|x") == "2 of 2"
    assert quoted.quote("json|r.json|k.1.z||2") == "0.25"


def test_summary_counts_values_not_records():
    """n counts the values present: a column that one run lacks says its own n."""
    from research.study_tables import summary_table
    runs = {"v": {(0, 0): {"x": 1.0, "y": 2.0}, (0, 1): {"x": 3.0, "y": None},
                  (0, 2): {"x": 5.0}}}
    table = summary_table(runs, ["x", "y"])
    assert "| v | 3 | 3.000 +- 2.000 | 2.000 (n = 1) |" in table


def test_demo_stats_match_the_records():
    from research import demo_stats
    assert demo_stats.main(["--check"]) == 0
