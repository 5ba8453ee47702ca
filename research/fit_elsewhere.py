"""Circular against fitted-elsewhere ORL numbers (docs/results.md, issue 22 item 2).

    python -m research.fit_elsewhere vgg19-ecloss=default-make-demo-s0 vgg19-ecloss-s1=default-s1

zoo.evaluate ranks the channels `explain` shows by a channel table (evidence, place counts)
fitted on faces. Fitted on the very faces it then scores ("same"), the held-out ORL "shown on
ring" is measured on its own fitting data. This evaluates each model on the held-out identities
with the table fitted three ways - on the scored faces ("same"), on the other half of the
held-out identities ("halves", zoo.evaluate's default) and on the training identities ("train")
- and writes one record per model to docs/results/fit_elsewhere/ (research.study_tables'
record format: variant, seed, fold, numbers by column name).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "fit_elsewhere"
_RUN = re.compile(r"^(?P<variant>.+)-s(?P<seed>\d+)$")


def fit_record(model: str, fits=("halves", "train")) -> dict:
    """{column: value} for one model: shown on ring / shown shift follows, per way of fitting."""
    from zoo.evaluate import evaluate
    rec = {}
    for fit in fits:
        with tempfile.TemporaryDirectory() as tmp:
            res = evaluate(model, out=tmp, figures=False, write_channel_parts=False, fit=fit)
        dep = res["explainability"]["input_dependence"]
        rec["shown on ring (fit: same)"] = dep["self_fit"]["shown_ring_share"]
        rec["shown shift follows (fit: same)"] = dep["self_fit"].get("shown_shift_follows")
        rec[f"shown on ring (fit: {fit})"] = dep["shown_ring_share"]
        rec[f"shown shift follows (fit: {fit})"] = dep.get("shown_shift_follows")
        rec[f"fit faces ({fit})"] = dep["fit"]
        ex, ver = res["explainability"], res["verification"]
        rec.update({"accuracy": ver["accuracy"], "AUC": ver["auc"],
                    "PE": ex["part_explainability"], "LS": ex["location_consistency"],
                    "none": ex["none_fraction"], "peaks": ex["activation_robustness"],
                    "fixed-cell channels": dep["fixed_cell_share"],
                    "shift follows": dep.get("shift_follows"),
                    "position channels": dep.get("position_channel_share")})
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="MODEL=<variant>-s<seed>")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--fits", nargs="+", default=["halves", "train"])
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        model, _, name = run.partition("=")
        m = _RUN.match(name)
        if not m:
            raise SystemExit(f"{run!r}: give runs as MODEL=<variant>-s<seed>")
        rec = {"variant": m["variant"], "seed": int(m["seed"]), "fold": 0, "model": model,
               "split": "heldout", **fit_record(model, args.fits)}
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(rec, indent=1) + "\n")
        print(f"wrote {path}: " + ", ".join(f"{k} {v:.3f}" for k, v in rec.items()
                                             if isinstance(v, float)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
