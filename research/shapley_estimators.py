"""How far are cheaper Shapley estimates from the exact values on real pairs?

    python -m research.shapley_estimators out/vgg19-ecloss \
        --out docs/results/shapley_estimators.json

Plays the exact hide-and-compare game (export.part_game, all 256 coalitions) on pairs of faces
(ORL training identities: same person and different people; swap-game pairs), keeps every
coalition's value, then computes each estimator from the subset of values it would have
evaluated and compares it with the exact Shapley values: the largest absolute error (in units
of the similarity), that error relative to 1 - similarity, and whether the part ranked first is
the same. Writes the per-pair numbers and a summary.
"""
import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

from export.match_evidence import MatchExplainer
from export.part_game import PLAYERS, shapley_kernel, shapley_pairwise

N = len(PLAYERS)


def kernel_shap(v, sizes):
    """export.part_game.shapley_kernel on the coalitions whose size is in ``sizes`` (plus the
    empty and grand ones, which fix the sum). v: {bitmask: value}."""
    masks = [0, (1 << N) - 1] + [sum(1 << i for i in c) for s in sizes
                                 for c in combinations(range(N), s)]
    members = np.array([[(m >> i) & 1 for i in range(N)] for m in masks], bool)
    return shapley_kernel(members, np.array([v[m] for m in masks]))


def permutation_sampling(v, n_perm, seed):
    """Antithetic permutation sampling: each order and its reverse."""
    rng = np.random.default_rng(seed)
    phi = np.zeros(N)
    count = 0
    for _ in range(n_perm // 2):
        order = rng.permutation(N)
        for o in (order, order[::-1]):
            m = 0
            for i in o:
                phi[i] += v[m | (1 << i)] - v[m]
                m |= 1 << i
            count += 1
    return phi / count


def unique_coalitions_of_permutations(n_perm, seed):
    rng = np.random.default_rng(seed)
    seen = set()
    for _ in range(n_perm // 2):
        order = rng.permutation(N)
        for o in (order, order[::-1]):
            m = 0
            seen.add(m)
            for i in o:
                m |= 1 << i
                seen.add(m)
    return len(seen)


def pairs_to_play():
    from PIL import Image

    from zoo.data.orl import orl_identity_split, orl_root
    train, _ = orl_identity_split(30, 0)
    root = orl_root()
    img = lambda i, k: Image.open(root / f"s{i}/{k}.pgm").convert("RGB")  # noqa: E731
    pairs = []
    for j in range(6):
        a, b = train[2 * j], train[2 * j + 1]
        pairs.append((f"s{a}/1 vs s{a}/2 (same)", img(a, 1), img(a, 2)))
        pairs.append((f"s{a}/1 vs s{b}/1 (different)", img(a, 1), img(b, 1)))
    return pairs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    ex = MatchExplainer(args.model, device="cpu", estimator="exact")
    estimators = {
        "pairwise (18 coalitions)": lambda v: shapley_pairwise(
            np.array([v[0], v[(1 << N) - 1]] + [v[1 << i] for i in range(N)]
                     + [v[((1 << N) - 1) ^ (1 << i)] for i in range(N)]), N),
        "kernel sizes 1,7 (18)": lambda v: kernel_shap(v, (1, 7)),
        "kernel sizes 1,2,6,7 (74)": lambda v: kernel_shap(v, (1, 2, 6, 7)),
        "kernel sizes 1,6,7 (46)": lambda v: kernel_shap(v, (1, 6, 7)),
        "kernel sizes 1,2,7 (46)": lambda v: kernel_shap(v, (1, 2, 7)),
        "permutations x4 (antithetic)": lambda v: permutation_sampling(v, 4, 0),
        "permutations x8 (antithetic)": lambda v: permutation_sampling(v, 8, 0),
    }
    cost = {"permutations x4 (antithetic)": unique_coalitions_of_permutations(4, 0),
            "permutations x8 (antithetic)": unique_coalitions_of_permutations(8, 0)}
    rows = []
    for name, a, b in pairs_to_play():
        ev = ex.explain(a, b)
        g = ev.game
        index = g.members.astype(np.int64) @ (1 << np.arange(N))
        v = dict(zip(index.tolist(), g.values.tolist()))
        exact = g.shapley
        row = {"pair": name, "similarity": ev.similarity, "exact": exact.tolist(),
               "values": {str(k): val for k, val in v.items()},
               "estimators": {}}
        for est, f in estimators.items():
            phi = f(v)
            err = float(np.abs(phi - exact).max())
            row["estimators"][est] = {
                "max_abs_error": err,
                "relative_to_difference": err / max(1 - ev.similarity, 1e-9),
                "same_first": bool(np.argmin(phi) == np.argmin(exact))}
        rows.append(row)
        print(name, round(ev.similarity, 4), {k: round(r["max_abs_error"], 4)
                                               for k, r in row["estimators"].items()})
    summary = {}
    for est in estimators:
        errs = [r["estimators"][est] for r in rows]
        summary[est] = {"median_max_abs_error": float(np.median([e["max_abs_error"]
                                                                 for e in errs])),
                        "median_relative": float(np.median([e["relative_to_difference"]
                                                            for e in errs])),
                        "same_first": int(sum(e["same_first"] for e in errs)),
                        "pairs": len(errs), "coalitions": cost.get(est)}
    Path(args.out).write_text(json.dumps({"model": args.model, "players": list(PLAYERS),
                                          "summary": summary, "rows": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
