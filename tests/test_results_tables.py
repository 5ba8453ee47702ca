"""docs/results.md's tables are generated from the committed per-run records, never typed:
tools/results_tables.py --check fails when one differs (and when a table name is unknown)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _check(doc_text, tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import results_tables
    finally:
        sys.path.pop(0)
    doc = tmp_path / "results.md"
    doc.write_text(doc_text)
    monkeypatch.setattr(results_tables, "DOC", doc)
    return results_tables.main(["--check"])


def test_committed_tables_match_the_records():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "results_tables.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_typed_number_is_caught(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "results.md").read_text()
    start = text.index("<!-- table:remedies-metrics -->")
    row = text.index("| softmax | 3 |", start)
    edited = text[:row] + "| softmax | 3 | 0.999" + text[row + len("| softmax | 3 | 0.847"):]
    assert _check(edited, tmp_path, monkeypatch) == 1
    assert _check(text, tmp_path, monkeypatch) == 0
