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
