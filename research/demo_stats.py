"""How much the `make demo` check on the 13 non-ORL faces can carry (docs/results.md, Part 2).

    python -m research.demo_stats            # write docs/results/nonorl_demo_stats.json
    python -m research.demo_stats --check    # exit 1 when the file differs from the records

From the per-run records in docs/results/nonorl_demo/: the four runs of the `make demo` setting
on the 13 faces (their shown-on-ring shares, mean, sample std, and a one-sided t-test that the
mean is below the 0.25 target), a bootstrap over the faces of the `make demo` model's share (a
95% percentile interval, seeded), and the `make demo` model against softmax face by face (the
per-face shares, Wilcoxon signed-rank test).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
OUT = RESULTS / "nonorl_demo_stats.json"
RUNS = ["default-make-demo-s0", "default-s0", "default-s1", "default-s2"]
TARGET = 0.25
LABEL = "non-ORL test"
BOOTSTRAP = 10000


def _record(name: str) -> dict:
    return json.loads((RESULTS / "nonorl_demo" / f"{name}.json").read_text())


def demo_stats() -> dict:
    from scipy import stats
    shares = [_record(r)[f"shown on ring ({LABEL})"] for r in RUNS]
    t = stats.ttest_1samp(shares, TARGET, alternative="less")
    demo, soft = _record(RUNS[0]), _record("softmax-s0")
    if demo[f"faces ({LABEL})"] != soft[f"faces ({LABEL})"]:
        raise ValueError("the make demo and softmax records hold different faces")
    ring = np.asarray(demo[f"ring channels per face ({LABEL})"], float)
    shown = np.asarray(demo[f"shown channels per face ({LABEL})"], float)
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(ring), size=(BOOTSTRAP, len(ring)))
    boot = ring[draws].sum(1) / np.maximum(shown[draws].sum(1), 1)
    per_face = ring / np.maximum(shown, 1)
    soft_face = (np.asarray(soft[f"ring channels per face ({LABEL})"], float)
                 / np.maximum(np.asarray(soft[f"shown channels per face ({LABEL})"], float), 1))
    w = stats.wilcoxon(per_face, soft_face)
    return {"runs": RUNS, "shares": shares, "mean": float(np.mean(shares)),
            "sample_std": float(np.std(shares, ddof=1)), "target": TARGET,
            "p_mean_below_target": float(t.pvalue), "runs_above_target":
            int(sum(s > TARGET for s in shares)),
            "make_demo_share": float(ring.sum() / shown.sum()), "bootstrap_draws": BOOTSTRAP,
            "bootstrap_95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "faces": len(ring), "wilcoxon_vs_softmax_p": float(w.pvalue),
            "softmax_share": float(soft[f"shown on ring ({LABEL})"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    text = json.dumps(demo_stats(), indent=1) + "\n"
    if args.check:
        same = OUT.is_file() and OUT.read_text() == text
        print(f"{OUT}: " + ("matches the records" if same else "differs from the records"))
        return 0 if same else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
