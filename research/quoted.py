"""Numbers quoted in the prose of docs/results.md, written from the committed records.

A quoted number sits between ``<!-- q:SPEC -->`` and ``<!-- /q -->``; research.results_tables
rewrites it from the records like a table, and ``--check`` fails when the text differs. SPEC is
``KIND|SOURCE|WHAT|COLUMN|DIGITS`` (DIGITS: decimals, default 3):

| KIND | SOURCE | WHAT | writes |
|---|---|---|---|
| mean | records folder (docs/results/<folder>) | variant | the mean over its runs |
| summary | folder | variant | mean +- sample std |
| values | folder | variant | each run's value, in (fold, seed) order, comma-separated |
| range | folder | variants, comma-separated | lowest-highest of the variants' means |
| paired | folder | "variant vs reference" | the mean +- sample std of the paired differences |
| pairedp | folder | "variant vs reference" | the paired t-test's p (2 significant digits) |
| diffs | folder | "variant vs reference" | each pair's difference, signed |
| lower | folder | "variant vs reference" | "k of n": pairs in which variant < reference |
| json | file under docs/results | dotted key (list index: a number) | the number there |

COLUMN is the record's column name (research.study_tables.COLUMNS and the other records'); json
has none (``json|FILE|KEY|DIGITS`` or ``json|FILE|KEY||DIGITS``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List

import numpy as np

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


def _diffs(folder: str, what: str, column: str) -> dict:
    variant, _, reference = what.partition(" vs ")
    runs = load_records(RESULTS / folder)
    return paired_tests(runs, [column], reference, [variant])[(variant, column)]


def quote(spec: str) -> str:
    """The text of one quoted number (see the module docstring)."""
    kind, source, what, column, *rest = (spec.split("|") + [""] * 4)[:5]
    if kind == "json" and column and not rest[0]:    # json has no column: json|FILE|KEY|DIGITS
        column, rest = "", [column]
    digits = int(rest[0]) if rest and rest[0] else 3
    f = f"{{:.{digits}f}}"
    if kind == "mean":
        return f.format(np.mean(_values(source, what, column)))
    if kind == "summary":
        v = _values(source, what, column)
        return f.format(np.mean(v)) + (f" +- {f.format(np.std(v, ddof=1))}" if len(v) > 1 else "")
    if kind == "values":
        return ", ".join(f.format(v) for v in _values(source, what, column))
    if kind == "range":
        means = [np.mean(_values(source, v, column)) for v in what.split(",")]
        return f"{f.format(min(means))}-{f.format(max(means))}"
    if kind in ("paired", "pairedp", "diffs", "lower"):
        t = _diffs(source, what, column)
        d = t["d"]
        if kind == "paired":
            return (f"{d.mean():+.{digits}f}"
                    + (f" +- {f.format(d.std(ddof=1))}" if len(d) > 1 else ""))
        if kind == "pairedp":
            return "n/a" if t["p"] is None else f"{t['p']:.2g}"
        if kind == "diffs":
            return ", ".join(f"{x:+.{digits}f}" for x in d)
        return f"{int((d < 0).sum())} of {len(d)}"
    if kind == "json":
        v = json.loads((RESULTS / source).read_text())
        for key in what.split("."):
            v = v[int(key)] if isinstance(v, list) else v[key]
        return f.format(float(v))
    raise ValueError(f"quote: unknown kind {kind!r} in {spec!r}")


def rewrite_quotes(text: str) -> str:
    """``text`` with every quoted number written from the records."""
    return QUOTE.sub(lambda m: m.group(1) + quote(m.group("spec")) + m.group(4), text)


def stale_quotes(text: str) -> List[str]:
    """The specs of the quoted numbers whose text differs from the records."""
    return [m.group("spec") for m in QUOTE.finditer(text)
            if m.group("body") != quote(m.group("spec"))]
