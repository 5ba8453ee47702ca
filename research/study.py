"""The with/without-ECLoss study on ORL: train, evaluate, aggregate over seeds and folds.

    python -m research.study --seeds 0 1 2                        # softmax vs ECLoss (paper)
    python -m research.study --seeds 0 1 2 --variants softmax ecloss ecloss-tau1 ecloss-tau1-batch
    python -m research.study --summarize docs/results/remedies --reference ecloss-tau1-fixed1

Each (variant, fold, seed) is trained with the study's preset (cpu by default: same data, schedule
and seed for every variant; the variants are research.study_variants'), registered as
study-<arch>-<variant>[-f<fold>]-s<seed>, evaluated on the ORL identities of --split, and the
table of mean +- std over seeds is written to --out/study.md and study.json; --results keeps the
raw numbers of every run as it finishes (research.study_tables). Runs already evaluated are
reused unless --fresh. A variant's lab settings (research.hooks) train through
research.hooks.ExperimentHook.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from zoo.runs import LOG_FILE, METRICS_FILE, SUMMARY_FILE, evaluation_dir, run_dir as run_folder

from .study_tables import (
    COLUMNS,
    aggregate,
    paired_differences,
    render,
    render_paired,
    run_numbers,
    summarize,
)
from .study_variants import (
    SHUFFLED_SUFFIX,
    UNCAPPED_SUFFIX,
    VARIANTS,
    base_variant,
    check_variant,
)

__all__ = ["run_name", "run_one", "write_run_record", "build_parser", "run_study", "report",
           "main"]


def _training_summary(run_dir: Path) -> Dict[str, float]:
    """Means of the last 20 logged steps (MI, CE) and the final beta, from log.csv."""
    with open(run_dir / LOG_FILE) as f:
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
    # imported here: --summarize needs neither torch nor matplotlib
    from zoo.evaluate import evaluate

    from .hooks import LAB_DEFAULTS, hook_from_settings
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
    trained = (run_dir / SUMMARY_FILE).exists()
    if (fresh or not trained) and base.endswith(UNCAPPED_SUFFIX):
        raise ValueError(f"{base}: a record of runs made before the content-free cap; the "
                         f"current code cannot train it (use the variant without "
                         f"{UNCAPPED_SUFFIX})")
    if (fresh and not shuffled) or not trained:
        from zoo.engine import train
        from zoo.train_config import TrainConfig
        settings = {**VARIANTS[base], **(geometry or {})}
        # the lab's settings train through its hook, the others are TrainConfig fields
        hook = hook_from_settings({k: settings.pop(k) for k in LAB_DEFAULTS if k in settings})
        cfg = TrainConfig(arch=arch, seed=seed, name=name, out=str(out), evaluate=False,
                          progress=False, resume=not fresh, overwrite=fresh,
                          **({"epochs": epochs} if epochs else {}),
                          orl_num_train=num_train, orl_num_val=num_val, orl_fold=fold, **settings)
        train(cfg, hook)
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


def write_run_record(results_dir: Path, variant: str, seed: int, fold: int, args,
                     geometry: Dict[str, object], metrics: Dict[str, object]) -> Path:
    """The raw numbers of one run, <variant>[-f<fold>]-s<seed>.json, written as it finishes
    (atomically: a temp file in the folder, then a rename), so a study spanning sessions keeps
    every finished run."""
    base = base_variant(variant)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / (f"{variant}" + (f"-f{fold}" if fold else "") + f"-s{seed}.json")
    text = json.dumps(
        {"variant": variant, "seed": seed, "fold": fold, "arch": args.arch, "split": args.split,
         "num_train": args.num_train, "num_val": args.num_val,
         "geometry": {k: v for k, v in geometry.items() if k != "device"},
         "epochs": args.epochs, "settings": VARIANTS[base], **run_numbers(metrics)},
        indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=results_dir, prefix=f".{path.name}.tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m research.study", description=__doc__,
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
    return p


def run_study(args, out: Path, geometry: Dict[str, object]):
    """Every (fold, seed, variant) of ``args``: ({variant: [metrics]}, {variant: [seed or
    (fold, seed)]}). One (fold, seed) at a time, every variant in it, so an interrupted study
    leaves whole pairs; finished runs are reused and an interrupted training run resumes from
    its checkpoint."""
    results: Dict[str, List[dict]] = {v: [] for v in args.variants}
    done_seeds: Dict[str, list] = {v: [] for v in args.variants}
    for fold in args.folds:
        for seed in args.seeds:
            for v in args.variants:
                base = base_variant(v)
                if args.evaluate_only and not (out / run_name(args.arch, base, seed, fold) /
                                               SUMMARY_FILE).exists():
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
    return results, done_seeds


def report(args, out: Path, results, done_seeds) -> str:
    """study.md and study.json in ``out``: mean +- std per variant and, with --reference, the
    seed-paired differences; returns the markdown."""
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
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = build_parser()
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
    os.environ["ZOO_HOME"] = str(Path(args.zoo_home) if args.zoo_home else (out / "zoo").resolve())
    geometry = {"preset": args.preset,
                **{k: getattr(args, k) for k in ("input_size", "width", "device")
                   if getattr(args, k) is not None}}
    results, done_seeds = run_study(args, out, geometry)
    if args.train_only:
        return 0
    print(report(args, out, results, done_seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
