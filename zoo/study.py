"""The with/without-ECLoss study at CPU scale on ORL: train, evaluate, aggregate over seeds.

    python -m zoo.study --seeds 0 1 2                         # softmax vs ECLoss (paper settings)
    python -m zoo.study --seeds 0 1 2 --variants softmax ecloss ecloss-tau1 ecloss-tau1-batch

Each (variant, seed) is trained with the cpu preset (same data, schedule and seed for every
variant), registered as study-<variant>-s<seed>, evaluated on the held-out ORL identities, and the
table of mean +- std over seeds is written to --out/study.md and study.json. Runs already
evaluated are reused unless --fresh.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

# Variants: TrainConfig overrides of the cpu preset. "ecloss" is the paper's setting (tau 1e-3,
# 400 templates, uniform marginal, beta from 1e-5 by the automatic rule); every variant states
# its ECLoss parameters so that none depends on the preset's ECLoss defaults.
PAPER_ECLOSS = {"loss": "ecloss", "tau": 1e-3, "beta": 1e-5, "beta_mode": "auto",
                "padding": "zeros", "template_peaks": "all", "content_free": 0.0, "translate": 0.0,
                "background": 0.0, "shuffled_faces": 0.0, "off_head": 0.0}
VARIANTS: Dict[str, Dict[str, object]] = {
    "softmax": {"loss": "softmax", "padding": "zeros", "translate": 0.0, "background": 0.0},
    "ecloss": dict(PAPER_ECLOSS),
    "ecloss-tau1": {**PAPER_ECLOSS, "tau": 1.0},
    "ecloss-tau1-batch": {**PAPER_ECLOSS, "tau": 1.0, "marginal": "batch"},
    "ecloss-tau1-fixed1": {**PAPER_ECLOSS, "tau": 1.0, "beta": 1.0, "beta_mode": "fixed"},
    # our extension: maps normalised by their max before the correlation
    "ecloss-norm": {**PAPER_ECLOSS, "tau": 1.0, "map_norm": "max"},
    "ecloss-norm-batch": {**PAPER_ECLOSS, "tau": 1.0, "map_norm": "max", "marginal": "batch"},
    "ecloss-norm-fixed1": {**PAPER_ECLOSS, "tau": 1.0, "map_norm": "max", "beta": 1.0,
                           "beta_mode": "fixed"},
}
# Remedies for channels that fire at a fixed border cell whatever the input (docs/results.md),
# each a change of the tau = 1, beta = 1 setting; all but the padding ones are our extensions.
TAU1_FIXED1 = {**PAPER_ECLOSS, "tau": 1.0, "beta": 1.0, "beta_mode": "fixed"}
VARIANTS.update({
    "ecloss-tau1-fixed1-batch": {**TAU1_FIXED1, "marginal": "batch"},
    "ecloss-reflect": {**TAU1_FIXED1, "padding": "reflect"},
    "ecloss-replicate": {**TAU1_FIXED1, "padding": "replicate"},
    "ecloss-circular": {**TAU1_FIXED1, "padding": "circular"},
    "ecloss-content-free-circular": {**TAU1_FIXED1, "content_free": 1.0, "padding": "circular"},
    "ecloss-translate": {**TAU1_FIXED1, "translate": 0.15},
    "ecloss-content-free": {**TAU1_FIXED1, "content_free": 1.0},
    "ecloss-content-free-0.1": {**TAU1_FIXED1, "content_free": 0.1},
    "ecloss-content-free-5": {**TAU1_FIXED1, "content_free": 5.0},
    "ecloss-content-free-reflect": {**TAU1_FIXED1, "content_free": 1.0, "padding": "reflect"},
    "ecloss-content-free-batch": {**TAU1_FIXED1, "content_free": 1.0, "marginal": "batch"},
})
# Runs made before content_free_penalty capped the term (kept as records; the code that trained
# them is commit 64bfa4d and earlier): evaluated under these names, never trained again.
VARIANTS.update({f"{name}-uncapped": VARIANTS[name] for name in (
    "ecloss-content-free", "ecloss-content-free-0.1", "ecloss-content-free-reflect",
    "ecloss-content-free-batch")})
VARIANTS.update({
    "ecloss-interior": {**TAU1_FIXED1, "template_peaks": "interior"},
    "softmax-reflect": {"loss": "softmax", "padding": "reflect", "translate": 0.0,
                        "background": 0.0},
    # the default plus one more change each: templates peaking only inside the map, or shifted
    # faces (ORL faces fill the frame, so hair and jaw sit on the 7 x 7 ring)
    "ecloss-content-free-reflect-interior": {**TAU1_FIXED1, "content_free": 1.0,
                                             "padding": "reflect", "template_peaks": "interior"},
    "ecloss-content-free-reflect-translate": {**TAU1_FIXED1, "content_free": 1.0,
                                              "padding": "reflect", "translate": 0.15},
})
# The ECLoss weight beta of the content-free + reflect setting, swept (0.1 to 10; 1 was the
# default): how hard must the maps be pushed towards the templates? And the 14 x 14 choice
# (reflection padding alone) at beta = 3.
VARIANTS.update({f"ecloss-content-free-reflect-beta{b:g}": {
    **TAU1_FIXED1, "beta": b, "content_free": 1.0, "padding": "reflect"}
    for b in (0.1, 0.3, 3.0, 10.0)})
VARIANTS["ecloss-reflect-beta3"] = {**TAU1_FIXED1, "beta": 3.0, "padding": "reflect"}
# A random background behind the head on half of the training faces (zoo.data.background): ORL's
# even dark background makes the hair/background edges the sharpest features of every image.
VARIANTS.update({
    "softmax-reflect-background": {"loss": "softmax", "padding": "reflect", "translate": 0.0,
                                   "background": 0.5},
    "ecloss-content-free-reflect-background": {**TAU1_FIXED1, "content_free": 1.0,
                                               "padding": "reflect", "background": 0.5},
    "ecloss-content-free-reflect-beta3-background": {**TAU1_FIXED1, "beta": 3.0,
                                                     "content_free": 1.0, "padding": "reflect",
                                                     "background": 0.5},
})
# The ICNN paper's part-shuffled images: half of the content-free images of a step are the
# batch's own faces cut into 4 x 4 tiles put back in a random order, pushed to the negative
# template like the blank ones: face textures without a face must not light a part channel.
VARIANTS.update({
    "ecloss-content-free-reflect-beta3-shuffled": {**TAU1_FIXED1, "beta": 3.0,
                                                   "content_free": 1.0, "padding": "reflect",
                                                   "shuffled_faces": 0.5},
})
# Landmark supervision (our extension): the share of each map's activation off the head is
# penalised (zoo.ecloss.off_head_share), with random backgrounds behind the head on half of the
# faces so that "off the head" is not always ORL's dark wall.
VARIANTS.update({f"ecloss-content-free-reflect-beta3-offhead{w:g}": {
    **TAU1_FIXED1, "beta": 3.0, "content_free": 1.0, "padding": "reflect", "background": 0.5,
    "off_head": w} for w in (1.0, 3.0)})
# Controls (not methods): the default's network never trained ("untrained"), and the default with
# each template's cells shuffled ("...-permuted": the same MI pressure of the same strength
# towards maps that match no spatial shape), so a gain can be traced to template matching.
VARIANTS.update({
    "untrained": {**TAU1_FIXED1, "content_free": 1.0, "padding": "reflect", "max_steps": 0},
    "ecloss-content-free-reflect-permuted": {**TAU1_FIXED1, "content_free": 1.0,
                                             "padding": "reflect", "template_peaks": "permuted"},
})
# Controls computed at evaluation, from a trained run of another variant: "<variant>+shuffled"
# is that run's maps with the cells of every map shuffled (chance levels of the map metrics).
SHUFFLED_SUFFIX = "+shuffled"


def base_variant(variant: str) -> str:
    """The trained variant behind ``variant``: "<v>+shuffled" -> "<v>", others unchanged."""
    return variant[:-len(SHUFFLED_SUFFIX)] if variant.endswith(SHUFFLED_SUFFIX) else variant

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
    return {label: (None if _get(metrics, path) is None else float(_get(metrics, path)))
            for label, path in COLUMNS}


def _training_summary(run_dir: Path) -> Dict[str, float]:
    """Means of the last 20 logged steps (MI, CE) and the final beta, from log.csv."""
    import csv
    with open(run_dir / "log.csv") as f:
        rows = list(csv.DictReader(f))
    if not rows:   # the untrained control took no step
        return {"final_mi": None, "final_beta": None, "final_ce": None, "steps": 0}
    last = rows[-20:]
    return {"final_mi": float(np.mean([float(r["mi"]) for r in last])),
            "final_beta": float(last[-1]["beta"]),
            "final_ce": float(np.mean([float(r["ce"]) for r in last])), "steps": len(rows)}


def run_name(arch: str, variant: str, seed: int, fold: int = 0) -> str:
    """The registered name of one run: study-<arch>-<variant>[-f<fold>]-s<seed> (fold 0 keeps the
    name runs had before test folds existed)."""
    return f"study-{arch}-{variant}" + (f"-f{fold}" if fold else "") + f"-s{seed}"


def check_variant(variant: str) -> str:
    """``variant`` if it is a VARIANTS key or "<key>+shuffled"; else a ValueError listing them."""
    base = base_variant(variant)
    if base not in VARIANTS:
        raise ValueError(f"unknown study variant {variant!r}; choose from {sorted(VARIANTS)} "
                         f"(any of them + {SHUFFLED_SUFFIX!r} for the cell-shuffled control)")
    return variant


def run_one(variant: str, seed: int, arch: str, out: Path, fresh: bool,
            epochs: Optional[int], reevaluate: bool = False, num_train: int = 30,
            num_val: int = 0, split: str = "heldout",
            train_only: bool = False, fold: int = 0,
            geometry: Optional[Dict[str, object]] = None) -> Optional[Dict[str, object]]:
    """Train (unless done) and evaluate (unless done) one (variant, seed, fold); returns its
    metrics.

    num_train / num_val: ORL identities to train on / keep for validation; fold: the test fold
    (zoo.data.orl.orl_identity_splits); split: the identities the metrics are measured on ("val"
    to choose settings, "heldout" to report). geometry: TrainConfig overrides (preset,
    input_size, width, device) shared by every variant of a study. "<variant>+shuffled"
    evaluates the trained run of <variant> with every map's cells shuffled (a control)."""
    from .engine import TrainConfig, train
    from .evaluate import evaluate
    from .runs import METRICS_FILE, evaluation_dir, run_dir as run_folder
    shuffled = variant.endswith(SHUFFLED_SUFFIX)
    base = base_variant(variant)
    name = run_name(arch, base, seed, fold)
    run_dir = run_folder(name, out)
    eval_dir = evaluation_dir(run_name(arch, variant, seed, fold), out)
    if split == "val":
        # validation and test metrics of one run live side by side; runs evaluated on "val"
        # before this split of folders kept theirs in evaluation/ (explain_split says so)
        legacy = eval_dir / METRICS_FILE
        if not (legacy.exists() and json.loads(legacy.read_text()).get("explain_split") == "val"):
            eval_dir = eval_dir.with_name(eval_dir.name + "-val")
    metrics_path = eval_dir / METRICS_FILE
    trained = (run_dir / "summary.json").exists()
    if (fresh or not trained) and base.endswith("-uncapped"):
        raise ValueError(f"{base}: a record of runs made before the content-free cap; the "
                         "current code cannot train it (use the variant without -uncapped)")
    if (fresh and not shuffled) or not trained:
        cfg = TrainConfig(arch=arch, seed=seed, name=name, out=str(out), evaluate=False,
                          progress=False, resume=not fresh,
                          **({"epochs": epochs} if epochs else {}),
                          orl_num_train=num_train, orl_num_val=num_val, orl_fold=fold,
                          **{**VARIANTS[base], **(geometry or {})})
        train(cfg)
    if train_only:
        return None
    if fresh or reevaluate or not metrics_path.exists():
        metrics = evaluate(name, out=str(eval_dir), split=split, orl_num_train=num_train,
                           orl_num_val=num_val, orl_fold=fold,
                           device=(geometry or {}).get("device"),
                           shuffle_cells=shuffled, write_channel_parts=not shuffled)
    else:
        metrics = json.loads(metrics_path.read_text())
    metrics["training"] = _training_summary(run_dir)
    metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics


def _get(m, path):
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
            vals = [_get(r, path) for r in runs]
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
            pairs = [(_get(r, paths[label]), _get(ref[sd], paths[label]))
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
    """Markdown: mean +- sample std and n per variant (rounded once, from the raw numbers)."""
    order = list(variants) if variants else sorted(runs)
    lines = ["| variant | n | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for v in order:
        cells = []
        for label in labels:
            vals = [r[label] for r in runs.get(v, {}).values() if r.get(label) is not None]
            cells.append("n/a" if not vals else f"{np.mean(vals):.3f}" + (
                f" +- {np.std(vals, ddof=1):.3f}" if len(vals) > 1 else ""))
        lines.append(f"| {v} | {len(runs.get(v, {}))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_table(runs, labels: Sequence[str], reference: str,
                 variants: Optional[Sequence[str]] = None) -> str:
    """Markdown: per variant, the differences to ``reference`` paired by (fold, seed): mean +-
    sample std and a two-sided paired t-test p over the runs both have."""
    from scipy import stats
    order = list(variants) if variants else sorted(runs)
    rows = ["| variant | runs | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for v in order:
        if v == reference or v not in runs or reference not in runs:
            continue
        keys = sorted(set(runs[v]) & set(runs[reference]))
        cells = []
        for label in labels:
            d = np.array([runs[v][k][label] - runs[reference][k][label] for k in keys
                          if runs[v][k].get(label) is not None
                          and runs[reference][k].get(label) is not None])
            if len(d) == 0:
                cells.append("n/a")
                continue
            cell = f"{d.mean():+.3f}"
            if len(d) > 1:
                cell += f" +- {d.std(ddof=1):.3f}"
                if d.std(ddof=1) > 0:
                    cell += f" (p={stats.ttest_1samp(d, 0.0).pvalue:.2g})"
            cells.append(cell)
        rows.append(f"| {v} | {_run_keys(keys)} | " + " | ".join(cells) + " |")
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


def write_run_record(results_dir: Path, variant: str, seed: int, fold: int, args,
                     geometry: Dict[str, object], metrics: Dict[str, object]) -> Path:
    """The raw numbers of one run, <variant>[-f<fold>]-s<seed>.json, written as it finishes
    (atomically), so a study spanning sessions keeps every finished run."""
    from ._io import atomic_write_bytes
    base = base_variant(variant)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / (f"{variant}" + (f"-f{fold}" if fold else "") + f"-s{seed}.json")
    atomic_write_bytes(path, (json.dumps(
        {"variant": variant, "seed": seed, "fold": fold, "arch": args.arch, "split": args.split,
         "num_train": args.num_train, "num_val": args.num_val,
         "geometry": {k: v for k, v in geometry.items() if k != "device"},
         "epochs": args.epochs, "settings": VARIANTS[base], **run_numbers(metrics)},
        indent=2) + "\n").encode())
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=["softmax", "ecloss"],
                   help=f"from {sorted(VARIANTS)}; <variant>{SHUFFLED_SUFFIX} evaluates that "
                        "variant's trained run with every map's cells shuffled (a control)")
    p.add_argument("--arch", default="vgg16")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--folds", type=int, nargs="+", default=[0],
                   help="ORL test folds (disjoint held-out identities; 4 for 25 / 5 / 10)")
    p.add_argument("--preset", default="cpu", help="training preset (zoo.config.PRESETS) that "
                   "fills what the variants leave unset; cpu by default on every device")
    p.add_argument("--input-size", type=int, help="override the preset's input size (224: the "
                   "paper's 14 x 14 maps)")
    p.add_argument("--width", type=float, help="override the preset's VGG width (1: the paper's)")
    p.add_argument("--device", help="cpu | cuda (default: cuda when present)")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--fresh", action="store_true", help="retrain and re-evaluate everything")
    p.add_argument("--reevaluate", action="store_true", help="re-evaluate trained runs")
    p.add_argument("--num-train", type=int, default=30, help="ORL training identities")
    p.add_argument("--num-val", type=int, default=0, help="ORL validation identities")
    p.add_argument("--split", default="heldout", choices=["val", "heldout"],
                   help="identities the metrics are measured on: val (choosing) or heldout")
    p.add_argument("--train-only", action="store_true", help="train, do not evaluate")
    p.add_argument("--evaluate-only", action="store_true",
                   help="evaluate (or read) runs already trained; skip the others")
    p.add_argument("--results", help="folder for the raw numbers of every run "
                                     "(<variant>-s<seed>.json, written as each run finishes)")
    p.add_argument("--reference", help="variant the seed-paired differences are taken against")
    p.add_argument("--summarize", metavar="DIR",
                   help="print the tables of the per-run records in DIR (no training) and exit")
    p.add_argument("--columns", nargs="+", help="with --summarize: the columns to show")
    p.add_argument("--zoo-home", help="where the study's models are registered (default OUT/zoo, "
                                      "so they stay out of your model cache)")
    args = p.parse_args(argv)
    try:
        for v in args.variants:
            check_variant(v)
    except ValueError as exc:
        p.error(str(exc))
    if args.summarize:
        labels = args.columns or [label for label, _ in COLUMNS if not label.startswith("final")]
        given = "--variants" in (sys.argv[1:] if argv is None else argv)
        print(summarize(Path(args.summarize), labels, args.reference,
                        args.variants if given else None))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import os
    os.environ["ZOO_HOME"] = str(Path(args.zoo_home) if args.zoo_home else (out / "zoo").resolve())
    geometry = {"preset": args.preset,
                **{k: getattr(args, k) for k in ("input_size", "width", "device")
                   if getattr(args, k) is not None}}
    results = {v: [] for v in args.variants}
    done_seeds = {v: [] for v in args.variants}
    # one (fold, seed) at a time, every variant in it, so an interrupted study leaves whole
    # pairs; finished runs are reused and an interrupted training run resumes from its checkpoint
    for fold in args.folds:
        for seed in args.seeds:
            for v in args.variants:
                base = base_variant(v)
                if args.evaluate_only and not (out / run_name(args.arch, base, seed, fold) /
                                               "summary.json").exists():
                    continue
                m = run_one(v, seed, args.arch, out, args.fresh, args.epochs, args.reevaluate,
                            args.num_train, args.num_val, args.split, args.train_only, fold,
                            geometry)
                tag = f"{v} fold {fold} seed {seed}"
                if m is None:
                    print(f"{tag}: trained", flush=True)
                    continue
                results[v].append(m)
                done_seeds[v].append(seed if len(args.folds) == 1 else (fold, seed))
                if args.results:
                    write_run_record(Path(args.results), v, seed, fold, args, geometry, m)
                print(f"{tag}: acc {m['verification']['accuracy']:.4f} "
                      f"PE {m['explainability']['part_explainability']:.4f} "
                      f"LS {m['explainability']['location_consistency']:.4f} "
                      f"peaks {m['explainability']['activation_robustness']:.3f}", flush=True)
    if args.train_only:
        return 0
    results = {v: r for v, r in results.items() if r}
    table = aggregate(results)
    summary = {"seeds": args.seeds, "split": args.split, "runs": done_seeds, "table": table}
    text = render(table, args.seeds)
    if args.reference and args.reference in results:
        # pair by seed: only seeds every compared variant has
        seeds_ref = done_seeds[args.reference]
        labels = [label for label, _ in COLUMNS if not label.startswith("final")]
        diffs = {}
        for v, runs in results.items():
            common = [sd for sd in done_seeds[v] if sd in seeds_ref]
            sub = {v: [r for sd, r in zip(done_seeds[v], runs) if sd in common],
                   args.reference: [r for sd, r in zip(seeds_ref, results[args.reference])
                                    if sd in common]}
            diffs.update(paired_differences(sub, common, args.reference, labels))
        summary["paired_vs"] = args.reference
        summary["paired"] = diffs
        text += render_paired(diffs, args.reference)
    (out / "study.json").write_text(json.dumps(summary, indent=2))
    (out / "study.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
