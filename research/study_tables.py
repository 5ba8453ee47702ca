"""The study's numbers: the COLUMNS of a run's metrics, the per-run records (what
research.study --results writes, docs/results/*/), and the tables made from them (mean +- sample
std, differences paired by (fold, seed) with a paired t-test).

research.study renders a study's runs with ``aggregate`` / ``render`` / ``paired_differences``;
research.results_tables writes docs/results.md's tables with ``load_records``,
``summary_table`` and ``paired_table``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["COLUMNS", "run_numbers", "metric", "aggregate", "paired_differences", "render",
           "load_records", "summary_table", "paired_table", "summarize", "render_paired",
           "holm", "paired_tests", "runs_table"]

COLUMNS = [("accuracy", ("verification", "accuracy")), ("AUC", ("verification", "auc")),
           ("PE", ("explainability", "part_explainability")),
           ("LS", ("explainability", "location_consistency")),
           ("LS-max (ours)", ("explainability", "location_consistency_max")),
           ("none", ("explainability", "none_fraction")),
           ("peaks", ("explainability", "activation_robustness")),
           ("peaks@0 ring", ("explainability", "peaks", "0", "ring")),
           ("peaks@0 interior", ("explainability", "peaks", "0", "interior")),
           ("peaks@0.1 ring", ("explainability", "peaks", "0.1", "ring")),
           ("peaks@0.1 interior", ("explainability", "peaks", "0.1", "interior")),
           ("peaks@0.3 ring", ("explainability", "peaks", "0.3", "ring")),
           ("peaks@0.3 interior", ("explainability", "peaks", "0.3", "interior")),
           ("fixed-cell channels", ("explainability", "input_dependence", "fixed_cell_share")),
           ("input dependence", ("explainability", "input_dependence", "mean_dependence")),
           ("shown on ring", ("explainability", "input_dependence", "shown_ring_share")),
           ("strongest on ring", ("explainability", "input_dependence", "strongest_ring_share")),
           ("shift follows", ("explainability", "input_dependence", "shift_follows")),
           ("shift stays", ("explainability", "input_dependence", "shift_stays")),
           ("position channels", ("explainability", "input_dependence",
                                  "position_channel_share")),
           ("ICNN instability", ("explainability", "location_instability")),
           ("MI@tau=1 uniform", ("explainability", "mi_tau1_uniform")),
           ("MI@tau=1 batch", ("explainability", "mi_tau1_batch")),
           ("final MI", ("training", "final_mi")), ("final beta", ("training", "final_beta"))]


def run_numbers(metrics: Dict[str, object]) -> Dict[str, Optional[float]]:
    """The COLUMNS of one run as {label: value} (None where the run lacks it): the raw per-run
    record a study commits as each run finishes."""
    return {label: (None if metric(metrics, path) is None else float(metric(metrics, path)))
            for label, path in COLUMNS}


def metric(m, path):
    """The value at ``path`` (keys) of a nested metrics dict, or None where it is missing."""
    v = m
    for k in path:
        v = (v or {}).get(k)
    return v


def aggregate(results: Dict[str, List[Dict[str, object]]]) -> Dict[str, Dict[str, List[float]]]:
    """{variant: {label: [mean, sample std (ddof=1; 0 for one run), n]}} over the runs."""
    table = {}
    for variant, runs in results.items():
        table[variant] = {}
        for label, path in COLUMNS:
            vals = [metric(r, path) for r in runs]
            vals = [float(v) for v in vals if v is not None]
            table[variant][label] = [float(np.mean(vals)),
                                     float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                                     len(vals)] if vals else None
    return table


def paired_differences(results: Dict[str, List[Dict[str, object]]], seeds: Sequence[int],
                       reference: str, labels: Sequence[str]) -> Dict[str, Dict[str, list]]:
    """Per variant and label, the seed-paired differences (variant - reference): [mean, sample
    std, n, two-sided paired t-test p] (p is None for fewer than 2 pairs or zero variance)."""
    from scipy import stats
    paths = dict(COLUMNS)
    ref = {sd: r for sd, r in zip(seeds, results.get(reference, []))}
    out = {}
    for variant, runs in results.items():
        if variant == reference:
            continue
        out[variant] = {}
        for label in labels:
            pairs = [(metric(r, paths[label]), metric(ref[sd], paths[label]))
                     for sd, r in zip(seeds, runs) if sd in ref]
            d = np.array([float(a) - float(b) for a, b in pairs
                          if a is not None and b is not None])
            if len(d) == 0:
                continue
            p = None
            if len(d) > 1 and d.std(ddof=1) > 0:
                p = float(stats.ttest_1samp(d, 0.0).pvalue)
            out[variant][label] = [float(d.mean()),
                                   float(d.std(ddof=1)) if len(d) > 1 else 0.0, len(d), p]
    return out


def render(table, seeds) -> str:
    head = "| variant | " + " | ".join(label for label, _ in COLUMNS) + " |"
    lines = [f"Mean +- sample std over seeds {list(seeds)}.", "", head,
             "|---|" + "---|" * len(COLUMNS)]
    for variant, cols in table.items():
        cells = []
        for label, _ in COLUMNS:
            c = cols[label]
            cells.append("n/a" if c is None else (f"{c[0]:.3g} +- {c[1]:.2g}"
                                                  if label.startswith("final") else
                                                  f"{c[0]:.4f} +- {c[1]:.4f}"))
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_records(results_dir: Path) -> Dict[str, Dict[tuple, Dict[str, object]]]:
    """{variant: {(fold, seed): record}} from the per-run records in ``results_dir`` (as written
    with --results); records written before test folds existed are fold 0."""
    runs: Dict[str, Dict[tuple, Dict[str, object]]] = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        rec = json.loads(path.read_text())
        runs.setdefault(rec["variant"], {})[(int(rec.get("fold", 0)), int(rec["seed"]))] = rec
    return runs


def summary_table(runs, labels: Sequence[str], variants: Optional[Sequence[str]] = None) -> str:
    """Markdown: mean +- sample std per variant (rounded once, from the raw numbers). n counts
    the values present: the n column is the largest number of values of the row's columns, and a
    cell with fewer values says its own (n = k)."""
    order = list(variants) if variants else sorted(runs)
    lines = ["| variant | n | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for v in order:
        values = [[r[label] for r in runs.get(v, {}).values() if r.get(label) is not None]
                  for label in labels]
        counts = [len(vals) for vals in values if vals]
        n = max(counts, default=0)
        cells = []
        for vals in values:
            cells.append("n/a" if not vals else f"{np.mean(vals):.3f}" + (
                f" +- {np.std(vals, ddof=1):.3f}" if len(vals) > 1 else "")
                + ("" if len(vals) == n else f" (n = {len(vals)})"))
        lines.append(f"| {v} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def runs_table(runs, labels: Sequence[str], variants: Optional[Sequence[str]] = None) -> str:
    """Markdown: one row per run (variant, seed), its numbers rounded once ("-": not measured)."""
    order = list(variants) if variants else sorted(runs)
    lines = ["| variant | seed | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for v in order:
        for (fold, seed), rec in sorted(runs.get(v, {}).items()):
            cells = ["-" if rec.get(label) is None else f"{rec[label]:.3f}" for label in labels]
            lines.append(f"| {v} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def holm(pvalues: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjustment of a family of p-values (None: no test, left out of the
    family and returned as None): the i-th smallest of m p-values becomes
    max over j <= i of min(1, (m - j + 1) p_(j)). A test survives at level a when its adjusted
    p is below a; this controls the family-wise error rate at a."""
    tested = [(p, k) for k, p in enumerate(pvalues) if p is not None]
    m = len(tested)
    out: List[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, k) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * float(p)))
        out[k] = running
    return out


def paired_tests(runs, labels: Sequence[str], reference: str,
                 variants: Optional[Sequence[str]] = None) -> Dict[tuple, Dict[str, object]]:
    """{(variant, label): {"d": paired differences, "keys": (fold, seed) keys, "p": two-sided
    paired t-test p or None, "holm": Holm-adjusted p over every test of this call (the family:
    one paired table)}}, the differences variant - reference paired by (fold, seed)."""
    from scipy import stats
    order = list(variants) if variants else sorted(runs)
    out: Dict[tuple, Dict[str, object]] = {}
    for v in order:
        if v == reference or v not in runs or reference not in runs:
            continue
        keys = sorted(set(runs[v]) & set(runs[reference]))
        for label in labels:
            d = np.array([runs[v][k][label] - runs[reference][k][label] for k in keys
                          if runs[v][k].get(label) is not None
                          and runs[reference][k].get(label) is not None])
            p = (float(stats.ttest_1samp(d, 0.0).pvalue)
                 if len(d) > 1 and d.std(ddof=1) > 0 else None)
            out[(v, label)] = {"d": d, "keys": keys, "p": p}
    cells = list(out.values())
    for cell, adj in zip(cells, holm([c["p"] for c in cells])):
        cell["holm"] = adj
    return out


def paired_table(runs, labels: Sequence[str], reference: str,
                 variants: Optional[Sequence[str]] = None) -> str:
    """Markdown: per variant, the differences to ``reference`` paired by (fold, seed): mean +-
    sample std, a two-sided paired t-test p over the runs both have and its Holm-adjusted p
    over every test of the table (paired_tests); a line under the table names the tests that
    survive Holm at 0.05."""
    tests = paired_tests(runs, labels, reference, variants)
    rows = ["| variant | runs | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for v in dict.fromkeys(v for v, _ in tests):
        cells = []
        for label in labels:
            t = tests[(v, label)]
            d = t["d"]
            if len(d) == 0:
                cells.append("n/a")
                continue
            cell = f"{d.mean():+.3f}"
            if len(d) > 1:
                cell += f" +- {d.std(ddof=1):.3f}"
                if t["p"] is not None:
                    cell += f" (p={t['p']:.2g}; Holm {t['holm']:.2g})"
            cells.append(cell)
        keys = next(t["keys"] for (w, _), t in tests.items() if w == v)
        rows.append(f"| {v} | {_run_keys(keys)} | " + " | ".join(cells) + " |")
    tested = [(k, t) for k, t in tests.items() if t["p"] is not None]
    raw = sum(t["p"] < 0.05 for _, t in tested)
    kept = [f"{v}: {label}" for (v, label), t in tested if t["holm"] < 0.05]
    rows += ["", f"Holm over the {len(tested)} paired tests of this table: {raw} with p < 0.05, "
             f"{len(kept)} survive at 0.05" + (f" ({'; '.join(kept)})" if kept else "") + "."]
    return "\n".join(rows) + "\n"


def summarize(results_dir: Path, labels: Sequence[str], reference: Optional[str] = None,
              variants: Optional[Sequence[str]] = None) -> str:
    """Markdown tables from the committed per-run records: mean +- sample std and n per variant,
    then the differences against ``reference`` paired by (fold, seed) with a paired t-test.
    Needs no model: the raw numbers are the source."""
    runs = load_records(results_dir)
    text = summary_table(runs, labels, variants)
    if reference and reference in runs:
        text += ("\n" + f"Paired differences vs {reference} (mean +- sample std over the (fold, "
                 "seed) runs both have; two-sided paired t-test p):\n\n"
                 + paired_table(runs, labels, reference, variants))
    return text


def _run_keys(keys) -> str:
    """(fold, seed) keys as "0,1,2" (seeds, when every key is fold 0) or "f0s0,f1s0"."""
    if all(f == 0 for f, _ in keys):
        return ",".join(str(s) for _, s in keys)
    return ",".join(f"f{f}s{s}" for f, s in keys)


def render_paired(diffs: Dict[str, Dict[str, list]], reference: str) -> str:
    labels = sorted({label for d in diffs.values() for label in d},
                    key=[label for label, _ in COLUMNS].index)
    lines = ["", f"Seed-paired differences vs {reference}: mean +- sample std (paired t-test p).",
             "", "| variant | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for v, d in diffs.items():
        cells = []
        for label in labels:
            c = d.get(label)
            cells.append("n/a" if c is None else f"{c[0]:+.4f} +- {c[1]:.4f}" +
                         (f" (p={c[3]:.2g})" if c[3] is not None else ""))
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
