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


def test_quote_kinds_runs_and_json(tmp_path, monkeypatch):
    """run (one run's value), pairedmean, jsonint, jsondiff, jsonchange, jsonmean, jsonrange and
    json's e-format."""
    from research import quoted
    d = tmp_path / "f"
    d.mkdir()
    for name, seed, v in (("a", 0, 0.1), ("a", 1, 0.3), ("b", 0, 0.2), ("b", 1, 0.6)):
        (d / f"{name}-s{seed}.json").write_text(
            f'{{"variant": "{name}", "seed": {seed}, "x": {v}}}')
    (d / "a-f2-s0.json").write_text('{"variant": "a", "fold": 2, "seed": 0, "x": 0.9}')
    (tmp_path / "r.json").write_text('{"t": {"a": [0.912, 0.01], "b": [0.941, 0.01], '
                                     '"c": [0.125], "d": [0.0695], "e": 1.329e-05, "n": 3}}')
    monkeypatch.setattr(quoted, "RESULTS", tmp_path)
    assert quoted.quote("run|f|b@s1|x|2") == "0.60"
    assert quoted.quote("run|f|a@f2s0|x|1") == "0.9"
    assert quoted.quote("pairedmean|f|b vs a|x|2") == "+0.20"
    assert quoted.quote("jsonint|r.json|t.n") == "3"
    assert quoted.quote("json|r.json|t.e|e1") == "1.3e-5"
    assert quoted.quote("jsondiff|r.json|t.b.0 - t.a.0|100|1") == "+2.9"
    assert quoted.quote("jsondiff|r.json|t.a.0 - t.b.0||2") == "-0.03"
    assert quoted.quote("jsonchange|r.json|t.d.0 vs t.c.0") == "-44"
    assert quoted.quote("jsonmean|r.json|t.a.0,t.b.0||2") == "0.93"
    assert quoted.quote("jsonmean|r.json|t.{a,b}.1|100|1") == "1.0"
    assert quoted.quote("jsonrange|r.json|t.{c,d}.0||2") == "0.07-0.12"
    assert quoted.quote("jsonrange|r.json|t.a.0, t.d.0|100|0") == "7-91"
    import pytest
    with pytest.raises(ValueError):
        quoted.quote("run|f|a@s7|x")


def _swap_record(path, n_first, n_counted, channels=None):
    def score(k, n):
        return {"n_first": k, "n_counted": n, "n_below_min_change": 1,
                "by_part": {"eyes": {"n_first": k, "n_counted": n}}}
    scores = {"intervention": score(n_first, n_counted)}
    if channels:
        scores["channels"] = score(*channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(__import__("json").dumps({"scores": scores}))


def test_quote_swap_kinds(tmp_path, monkeypatch):
    """The part-swap game's kinds: counts summed over files, shares, ranges, and the per-seed
    channel-view shares paired by seed (ECLoss - softmax: 0.5 - 0.25, 0.25 - 0.0, 1.0 - 0.5)."""
    from research import quoted
    t = tmp_path / "sg"
    _swap_record(t / "one.json", 14, 16)
    _swap_record(t / "two.json", 28, 28)
    for model, seed, k, n in (("ecl", 0, 2, 4), ("ecl", 1, 1, 4), ("ecl", 2, 4, 4),
                              ("soft", 0, 1, 4), ("soft", 1, 0, 9), ("soft", 2, 2, 4),
                              ("ecl-14", 0, 1, 32)):
        _swap_record(t / f"orl-{model}-s{seed}-channels.json", 0, 0, channels=(k, n))
    monkeypatch.setattr(quoted, "RESULTS", tmp_path)
    assert quoted.quote("swap|sg/one.json,sg/two.json|intervention") == "42 of 44"
    assert quoted.quote("swap|sg/one.json|intervention.eyes") == "14 of 16"
    assert quoted.quote("swapshare|sg/one.json|intervention") == "0.88"
    assert quoted.quote("swapshare|sg/orl-ecl-14-s0-channels.json|channels||3") == "0.031"
    assert quoted.quote("swapcounted|sg/one.json,sg/two.json|intervention") == "44"
    assert quoted.quote("swaprange|sg/orl-soft-s0-channels.json,sg/orl-soft-s1-channels.json|"
                        "channels") == "4-9"
    pattern = "sg/orl-{}-channels.json"
    assert quoted.quote(f"swappaired|{pattern}|ecl vs soft|channels") == "+0.33 +- 0.14"
    assert quoted.quote(f"swappairedp|{pattern}|ecl vs soft|channels") == "0.057"
    import pytest
    with pytest.raises(ValueError):
        quoted.quote("swap|sg/missing.json|intervention")
