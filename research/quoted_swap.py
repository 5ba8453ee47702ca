"""Quoted numbers from the part-swap game's records (zoo.swap_game: docs/results/swap_game/,
docs/results/dlib_resnet/swap_*.json), for research.quoted. SPEC is
``KIND|FILES|VIEW|...|DIGITS``; FILES are paths under docs/results, comma-separated (their counts
are summed) or, for the paired kinds, a pattern with ``{}`` where ``MODEL-s<seed>`` goes; VIEW is
``intervention`` or ``channels``, optionally ``.PART`` (eyes, nose, mouth):

| KIND | FILES | WHAT | writes |
|---|---|---|---|
| swap | files | view[.part] | "k of n": swaps with the swapped part first, of the counted swaps |
| swapshare | files | view[.part] | k / n of the summed counts (DIGITS: default 2) |
| swapcounted | files | view | n: the counted swaps (moved the similarity by >= min_change) |
| swaprange | files | view | lowest-highest n over the files |
| swappaired | pattern | "model vs reference"; COLUMN: view | mean +- std of per-seed differences |
| swappairedp | pattern | "model vs reference"; COLUMN: view | their paired t-test p (2 digits) |
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Tuple

import numpy as np

__all__ = ["SWAP_KINDS", "swap_quote"]

SWAP_KINDS = ("swap", "swapshare", "swapcounted", "swaprange", "swappaired", "swappairedp")


def _score(results: Path, name: str, view: str) -> dict:
    path = results / name
    if not path.is_file():
        raise ValueError(f"quote: no swap-game record docs/results/{name}")
    view, _, part = view.partition(".")
    sc = json.loads(path.read_text())["scores"].get(view)
    if sc is None:
        raise ValueError(f"quote: docs/results/{name} has no {view!r} view")
    return sc["by_part"][part] if part else sc


def _counts(results: Path, files: str, view: str) -> Tuple[int, int]:
    scores = [_score(results, f.strip(), view) for f in files.split(",")]
    return sum(s["n_first"] for s in scores), sum(s["n_counted"] for s in scores)


def _seed_shares(results: Path, pattern: str, model: str, view: str) -> dict:
    """{seed: share} of ``model``'s runs (files ``pattern`` with ``{}`` = ``model-s<seed>``)."""
    head, _, tail = pattern.partition("{}")
    out = {}
    for path in sorted((results / head).parent.glob(Path(head).name + f"{model}-s*{tail}")):
        m = re.fullmatch(re.escape(Path(head).name + model) + r"-s(\d+)" + re.escape(tail),
                         path.name)
        if m:
            sc = _score(results, str(path.relative_to(results)), view)
            if sc["n_counted"]:
                out[int(m.group(1))] = sc["n_first"] / sc["n_counted"]
    if not out:
        raise ValueError(f"quote: no swap-game records of {model!r} for {pattern!r}")
    return out


def _paired(results: Path, pattern: str, what: str, view: str) -> List[float]:
    model, _, reference = what.partition(" vs ")
    a, b = (_seed_shares(results, pattern, m, view) for m in (model, reference))
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def swap_quote(results: Path, kind: str, source: str, what: str, column: str,
               digits: str) -> str:
    """The text of one swap-game quote (see the module docstring)."""
    if kind == "swap":
        k, n = _counts(results, source, what)
        return f"{k} of {n}"
    if kind == "swapshare":
        k, n = _counts(results, source, what)
        return f"{k / n:.{int(digits or 2)}f}"
    if kind == "swapcounted":
        return str(_counts(results, source, what)[1])
    if kind == "swaprange":
        ns = [_score(results, f.strip(), what)["n_counted"] for f in source.split(",")]
        return f"{min(ns)}-{max(ns)}"
    d = np.array(_paired(results, source, what, column or "channels"))
    if kind == "swappaired":
        f = f"{{:.{int(digits or 2)}f}}"
        return f"{d.mean():+.{int(digits or 2)}f}" + (
            f" +- {f.format(d.std(ddof=1))}" if len(d) > 1 else "")
    from scipy import stats
    if len(d) < 2 or d.std(ddof=1) == 0:
        return "n/a"
    return f"{stats.ttest_1samp(d, 0.0).pvalue:#.2g}"
