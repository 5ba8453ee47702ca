"""Numbers quoted in the prose of docs/results.md, written from the committed records.

A quoted number sits between ``<!-- q:SPEC -->`` and ``<!-- /q -->``; research.results_tables
rewrites it from the records like a table, and ``--check`` fails when the text differs. SPEC is
``KIND|SOURCE|WHAT|COLUMN|DIGITS`` (DIGITS: decimals, default 3):

| KIND | SOURCE | WHAT | writes |
|---|---|---|---|
| mean | records folder (docs/results/<folder>) | variant | the mean over its runs |
| summary | folder | variant | mean +- sample std |
| values | folder | variant | each run's value, in (fold, seed) order, comma-separated |
| run | folder | variant@f<fold>s<seed> (or @s<seed>: fold 0) | that one run's value |
| range | folder | variants, comma-separated | lowest-highest of the variants' means |
| paired | folder | "variant vs reference" | the mean +- sample std of the paired differences |
| pairedmean | folder | "variant vs reference" | the mean of the paired differences, signed |
| pairedp | folder | "variant vs reference" | the paired t-test's p (2 significant digits) |
| diffs | folder | "variant vs reference" | each pair's difference, signed |
| lower | folder | "variant vs reference" | "k of n": pairs in which variant < reference |
| json | file under docs/results | dotted key (list index: a number) | the number there |
| jsonint | file under docs/results | dotted key | the integer there (no DIGITS) |
| jsondiff | file | "key - key"; COLUMN: scale (default 1) | signed difference x scale |
| jsonchange | file | "key vs key" | signed change from the second to the first, % |
| jsonmean | file | keys, comma-separated or one {a,b,...} group; COLUMN: scale | mean x scale |
| jsonrange | file | keys, as jsonmean; COLUMN: scale | lowest-highest of them x scale |
| swap... | swap-game records | (research/quoted_swap.py) | counts, shares, paired seeds |

COLUMN is the record's column name (research.study_tables.COLUMNS and the other records'); json
has none (``json|FILE|KEY|DIGITS`` or ``json|FILE|KEY||DIGITS``; DIGITS ``e1`` writes 1.3e-5).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List

import numpy as np

from .quoted_swap import SWAP_KINDS, swap_quote
from .study_tables import load_records, paired_tests

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
QUOTE = re.compile(r"(<!-- q:(?P<spec>[^>]*?) -->)(?P<body>.*?)(<!-- /q -->)", re.S)

__all__ = ["QUOTE", "quote", "rewrite_quotes", "stale_quotes"]


def _values(folder: str, variant: str, column: str) -> List[float]:
    runs = load_records(RESULTS / folder).get(variant)
    if not runs:
        raise ValueError(f"quote: no records of {variant!r} in docs/results/{folder}")
    vals = [runs[k][column] for k in sorted(runs) if runs[k].get(column) is not None]
    if not vals:
        raise ValueError(f"quote: {variant!r} in {folder} has no {column!r}")
    return vals


def _run(folder: str, what: str, column: str) -> float:
    m = re.fullmatch(r"(.+)@(?:f(\d+))?s(\d+)", what)
    if not m:
        raise ValueError(f"quote: run wants variant@f<fold>s<seed>, not {what!r}")
    rec = load_records(RESULTS / folder).get(m.group(1), {}).get(
        (int(m.group(2) or 0), int(m.group(3))))
    if rec is None or rec.get(column) is None:
        raise ValueError(f"quote: no {column!r} of the run {what!r} in docs/results/{folder}")
    return rec[column]


def _diffs(folder: str, what: str, column: str) -> dict:
    variant, _, reference = what.partition(" vs ")
    runs = load_records(RESULTS / folder)
    return paired_tests(runs, [column], reference, [variant])[(variant, column)]


JSON_KINDS = ("json", "jsonint", "jsondiff", "jsonchange", "jsonmean", "jsonrange")


def _json_value(source: str, key: str) -> float:
    v = json.loads((RESULTS / source).read_text())
    for k in key.strip().split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    return float(v)


def _json_keys(what: str) -> List[str]:
    """Comma-separated keys, or one key with a ``{a,b,...}`` group: one key per alternative."""
    if "{" in what:
        head, _, rest = what.partition("{")
        alts, _, tail = rest.partition("}")
        return [head + a.strip() + tail for a in alts.split(",")]
    return [k.strip() for k in what.split(",")]


def _json_quote(kind: str, source: str, what: str, column: str, digits: str) -> str:
    """json kinds: ``json|FILE|KEY|DIGITS`` (or ``json|FILE|KEY||DIGITS``; DIGITS ``e1``: 1.3e-5),
    ``jsonint|FILE|KEY``, ``jsondiff|FILE|KEY_A - KEY_B|SCALE|DIGITS`` (signed, times SCALE),
    ``jsonchange|FILE|KEY_A vs KEY_B|DIGITS`` (signed percent change from B to A),
    ``jsonmean|FILE|KEYS|SCALE|DIGITS`` and ``jsonrange|FILE|KEYS|SCALE|DIGITS`` (mean, or
    lowest-highest, of several keys, times SCALE)."""
    if kind in ("json", "jsonchange") and column and not digits:
        column, digits = "", column
    if kind == "jsonint":
        return str(int(_json_value(source, what)))
    if kind in ("jsonmean", "jsonrange"):
        vals = [_json_value(source, k) * float(column or 1) for k in _json_keys(what)]
        f = f"{{:.{int(digits or 3)}f}}"
        if kind == "jsonmean":
            return f.format(np.mean(vals))
        return f"{f.format(min(vals))}-{f.format(max(vals))}"
    if kind == "jsondiff":
        a, _, b = what.partition(" - ")
        d = (_json_value(source, a) - _json_value(source, b)) * float(column or 1)
        return f"{d:+.{int(digits or 3)}f}"
    if kind == "jsonchange":
        a, _, b = what.partition(" vs ")
        d = 100 * (_json_value(source, a) / _json_value(source, b) - 1)
        return f"{d:+.{int(digits or 0)}f}"
    v = _json_value(source, what)
    if digits.startswith("e"):
        mantissa, _, exp = f"{v:.{int(digits[1:])}e}".partition("e")
        return f"{mantissa}e{int(exp)}"
    return f"{v:.{int(digits or 3)}f}"


def quote(spec: str) -> str:
    """The text of one quoted number (see the module docstring)."""
    kind, source, what, column, *rest = (spec.split("|") + [""] * 4)[:5]
    if kind in SWAP_KINDS:
        return swap_quote(RESULTS, kind, source, what, column, rest[0])
    if kind in JSON_KINDS:
        return _json_quote(kind, source, what, column, rest[0])
    digits = int(rest[0]) if rest and rest[0] else 3
    f = f"{{:.{digits}f}}"
    if kind == "mean":
        return f.format(np.mean(_values(source, what, column)))
    if kind == "summary":
        v = _values(source, what, column)
        return f.format(np.mean(v)) + (f" +- {f.format(np.std(v, ddof=1))}" if len(v) > 1 else "")
    if kind == "run":
        return f.format(_run(source, what, column))
    if kind == "values":
        return ", ".join(f.format(v) for v in _values(source, what, column))
    if kind == "range":
        means = [np.mean(_values(source, v, column)) for v in what.split(",")]
        return f"{f.format(min(means))}-{f.format(max(means))}"
    if kind in ("paired", "pairedmean", "pairedp", "diffs", "lower"):
        t = _diffs(source, what, column)
        d = t["d"]
        if kind == "paired":
            return (f"{d.mean():+.{digits}f}"
                    + (f" +- {f.format(d.std(ddof=1))}" if len(d) > 1 else ""))
        if kind == "pairedmean":
            return f"{d.mean():+.{digits}f}"
        if kind == "pairedp":
            return "n/a" if t["p"] is None else f"{t['p']:#.2g}"
        if kind == "diffs":
            return ", ".join(f"{x:+.{digits}f}" for x in d)
        return f"{int((d < 0).sum())} of {len(d)}"
    raise ValueError(f"quote: unknown kind {kind!r} in {spec!r}")


def rewrite_quotes(text: str) -> str:
    """``text`` with every quoted number written from the records."""
    return QUOTE.sub(lambda m: m.group(1) + quote(m.group("spec")) + m.group(4), text)


def stale_quotes(text: str) -> List[str]:
    """The specs of the quoted numbers whose text differs from the records."""
    return [m.group("spec") for m in QUOTE.finditer(text)
            if m.group("body") != quote(m.group("spec"))]
