"""How far are cheaper Shapley estimates of the hide-and-compare game from the exact values?

    # 1. play the EXACT game (all 256 coalitions) on 108 pairs and keep every coalition's value
    #    (about 16 minutes on 2 CPU threads for the flip-TTA demo model)
    python -m research.shapley_estimators collect out/vgg19-ecloss \
        --out docs/results/shapley_estimators_values_flip.json
    # 2. compute every candidate estimator from the subset of values it would evaluate and
    #    compare it with the exact Shapley values (seconds; no model needed)
    python -m research.shapley_estimators analyse docs/results/shapley_estimators_values_flip.json \
        --out docs/results/shapley_estimators_val.json --markdown

The game is export.part_game's: 8 players (7 face parts + ``other``), v(S) = cosine similarity
of the two faces' embeddings with only S visible, v(empty) = 1. A part's share of the
difference is minus its Shapley value, so the shares sum to 1 - similarity.

Pairs (``collect``; fixed seeds, so a rerun plays the same pairs):
  orl-same / orl-diff  ORL training identities of the default split (zoo.swap_game.orl_faces
                       ("train")): 16 same-person and 16 different-person whole-face pairs
                       (numpy rng seed 7);
  dev-diff             16 different-person pairs of the non-ORL development faces (--dev;
                       zoo.swap_game.pair_faces seed 11);
  orl-swap / dev-swap  A against A' = A with one part (eyes, nose, mouth) of another person
                       pasted in (zoo.metrics.faithfulness.swap_part): 10 pairs x 3 parts each,
                       on the ORL training identities (seed 21) and the development faces (22).
The JSON keeps one row per pair: pair, kind, similarity, values[256] indexed by the coalition
bitmask (bit i = PLAYERS[i] visible), and part for swaps. It is rewritten after every block.

Candidates (``analyse``; ESTIMATES), all computed with export.part_game's functions from the
values they would have evaluated. The coalition count leaves out the empty coalition (its value
is 1 without an embedding):
  pairwise    shapley_pairwise: sizes 1 and 7 (17 coalitions);
  kernel ...  shapley_kernel on the coalitions of the listed sizes plus the full one: {1,7} (17),
              {1,2} (37), {1,2,7} (45), {1,6,7} (45), {1,2,6,7} (73, the runtime's "kernel");
  perm x4/x6  antithetic permutation sampling (each order and its reverse; rng seed 0 for every
              pair, as a deterministic runtime would use).
Per kind of pair and overall: first-part agreement with the exact values over the 7 parts
(``other`` is not ranked); median and 90th percentile of the largest absolute error over the
8 players; the regret, the exact share of the exact top part minus the exact share of the
estimator's top part, in similarity units and relative to 1 - similarity, ONLY on pairs with
1 - similarity >= MIN_CHANGE (relative errors blow up on near-identical faces); for swaps that
moved the similarity by >= MIN_CHANGE, how often the estimator and the exact values rank the
swapped part first. The checks on synthetic games with known values (which candidates are exact
up to pairwise interactions, what a third-order one does): research/tests/
test_shapley_estimators.py.
"""
import argparse
import hashlib
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

from export.part_game import PLAYERS, coalitions, shapley_exact, shapley_kernel, shapley_pairwise
from zoo.metrics.faithfulness import MIN_CHANGE, swapped_part_first

N = len(PLAYERS)
FULL = (1 << N) - 1
PARTS = N - 1                 # the 7 face parts; "other" (the last player) is not ranked
KINDS = ("orl-same", "orl-diff", "dev-diff", "orl-swap", "dev-swap")
GOOD_REGRET = 0.05            # relative regret below this counts as "as good as exact"
DEV_DIR = "/work/data/nonorl/dev"
ALL_MEMBERS = ((np.arange(2 ** N)[:, None] >> np.arange(N)) & 1).astype(bool)


# ---------------------------------------------------------------------------------- collect
def game_values(explainer, image_a, image_b):
    """(similarity, [v(S) for S = 0 .. 255]) of one pair's exact game, rounded to 1e-8."""
    ev = explainer.explain(image_a, image_b)
    g = ev.game
    index = (g.members.astype(np.int64) @ (1 << np.arange(N))).tolist()
    values = [None] * (2 ** N)
    for i, val in zip(index, g.values.tolist()):
        values[i] = round(val, 8)
    return ev.similarity, values


def whole_face_pairs(orl, n=16, seed=7):
    """(a, b, kind) index triples: n same-person and n different-person ORL pairs, interleaved
    (one rng draws both, so the order is part of the recipe)."""
    rng = np.random.default_rng(seed)
    by_id = {}
    for i, f in enumerate(orl):
        by_id.setdefault(f[1], []).append(i)
    ids = sorted(by_id)
    out = []
    for _ in range(n):
        p = ids[rng.integers(len(ids))]
        a, b = rng.choice(by_id[p], 2, replace=False)
        out.append((int(a), int(b), "orl-same"))
        q = ids[rng.integers(len(ids))]
        while q == p:
            q = ids[rng.integers(len(ids))]
        out.append((int(a), int(rng.choice(by_id[q])), "orl-diff"))
    return out


def collect(model_dir, out, dev_dir=DEV_DIR, device="cpu", threads=2):
    """Play the exact game on every pair of the study and write the values to ``out``."""
    from export.match_evidence import MatchExplainer
    from zoo.metrics.faithfulness import SWAP_PARTS, swap_part
    from zoo.swap_game import folder_faces, orl_faces, pair_faces

    ex = MatchExplainer(model_dir, device=device, estimator="exact", threads=threads)
    rows = []
    t0 = time.time()

    def play(tag, kind, a, b, **extra):
        sim, values = game_values(ex, a, b)
        rows.append({"pair": tag, "kind": kind, "similarity": sim, "values": values, **extra})

    def save(block):
        Path(out).write_text(json.dumps({"model": str(model_dir), "players": list(PLAYERS),
                                         "rows": rows}))
        print(f"{block}: {len(rows)} rows, {time.time() - t0:.0f} s", flush=True)

    orl = orl_faces("train")
    dev = folder_faces(dev_dir)
    for a, b, kind in whole_face_pairs(orl):
        play(f"{orl[a][0]} vs {orl[b][0]}", kind, orl[a][2], orl[b][2])
    save("orl whole")
    for a, b in pair_faces(dev, 16, seed=11):
        play(f"{dev[a][0]} vs {dev[b][0]}", "dev-diff", dev[a][2], dev[b][2])
    save("dev whole")
    for faces, kind, seed in ((orl, "orl-swap", 21), (dev, "dev-swap", 22)):
        for a, b in pair_faces(faces, 10, seed=seed):
            for part in SWAP_PARTS:
                swapped = swap_part(faces[a][2], faces[a][3], faces[b][2], faces[b][3],
                                    part).image
                play(f"{faces[a][0]} <- {faces[b][0]} {part}", kind, faces[a][2], swapped,
                     part=part)
        save(kind)
    return rows


# ---------------------------------------------------------------------------------- estimators
def masks_of_sizes(*sizes):
    """Bitmasks of every coalition whose size is in ``sizes``."""
    return [sum(1 << i for i in c) for s in sizes for c in combinations(range(N), s)]


def kernel_estimate(v, sizes):
    """(phi, coalitions): shapley_kernel on the coalitions of ``sizes`` plus the empty and the
    full one (which fix the sum). v: the 256 values by bitmask."""
    masks = list(dict.fromkeys([0, FULL] + [m for m in masks_of_sizes(*sizes)
                                            if m not in (0, FULL)]))
    return shapley_kernel(ALL_MEMBERS[masks], np.asarray(v)[masks]), len(masks) - 1


def pairwise_estimate(v):
    """(phi, 17): shapley_pairwise from v(empty), v(all), the singles and the all-but-ones."""
    order = coalitions(N, "pairwise").astype(np.int64) @ (1 << np.arange(N))
    return shapley_pairwise(np.asarray(v)[order], N), len(set(order.tolist())) - 1


def permutation_estimate(v, n_perm, seed=0):
    """(phi, coalitions): antithetic permutation sampling, n_perm // 2 random orders each
    walked forwards and backwards; the count is the distinct non-empty coalitions visited."""
    rng = np.random.default_rng(seed)
    phi = np.zeros(N)
    seen = set()
    for _ in range(n_perm // 2):
        order = rng.permutation(N)
        for walk in (order, order[::-1]):
            m = 0
            for i in walk:
                phi[i] += v[m | (1 << i)] - v[m]
                m |= 1 << i
                seen.add(m)
    return phi / (2 * (n_perm // 2)), len(seen)


ESTIMATES = {
    "pairwise": pairwise_estimate,
    "kernel {1,7}": lambda v: kernel_estimate(v, (1, 7)),
    "kernel {1,2}": lambda v: kernel_estimate(v, (1, 2)),
    "kernel {1,2,7}": lambda v: kernel_estimate(v, (1, 2, 7)),
    "kernel {1,6,7}": lambda v: kernel_estimate(v, (1, 6, 7)),
    "kernel {1,2,6,7}": lambda v: kernel_estimate(v, (1, 2, 6, 7)),
    "perm x4": lambda v: permutation_estimate(v, 4),
    "perm x6": lambda v: permutation_estimate(v, 6),
}


def exact_shapley(v):
    """The exact Shapley values (8,) of the game given by its 256 values by bitmask."""
    return shapley_exact(ALL_MEMBERS, np.asarray(v, dtype=np.float64))


# ---------------------------------------------------------------------------------- analyse
def compare(row, exact, phi, coalitions, min_change=MIN_CHANGE):
    """One estimate of one pair against the exact values: a flat record (None where a number
    does not apply: regret below min_change, swap verdicts on whole-face pairs)."""
    share, est_share = -exact[:PARTS], -phi[:PARTS]      # each part's share of 1 - similarity
    top, est_top = int(np.argmax(share)), int(np.argmax(est_share))
    change = 1.0 - row["similarity"]
    rec = {"coalitions": coalitions, "first": top == est_top,
           "max_abs_error": float(np.abs(phi - exact).max()),
           "regret": None, "relative_regret": None, "swap_first": None, "swap_first_exact": None}
    if change >= min_change:
        rec["regret"] = float(share[top] - share[est_top])
        rec["relative_regret"] = rec["regret"] / change
        if "part" in row:
            parts = PLAYERS[:PARTS]
            rec["swap_first"] = swapped_part_first(dict(zip(parts, est_share)), row["part"])
            rec["swap_first_exact"] = swapped_part_first(dict(zip(parts, share)), row["part"])
    return rec


def percentile(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else None


def summarise(records, good=GOOD_REGRET):
    """The study's numbers for a list of compare() records."""
    err = [r["max_abs_error"] for r in records]
    reg = [r["regret"] for r in records if r["regret"] is not None]
    rel = [r["relative_regret"] for r in records if r["relative_regret"] is not None]
    swaps = [r for r in records if r["swap_first"] is not None]
    counts = sorted({r["coalitions"] for r in records})
    return {
        "pairs": len(records),
        "coalitions": counts[0] if len(counts) == 1 else counts,
        "first_agree": int(sum(r["first"] for r in records)),
        "max_abs_error_median": percentile(err, 50), "max_abs_error_p90": percentile(err, 90),
        "regret_pairs": len(reg),
        "regret_median": percentile(reg, 50), "regret_p90": percentile(reg, 90),
        "relative_regret_median": percentile(rel, 50),
        "relative_regret_p90": percentile(rel, 90),
        "relative_regret_good": int(np.sum(np.asarray(rel) < good)),
        "swaps": len(swaps),
        "swap_first": int(sum(r["swap_first"] for r in swaps)),
        "swap_first_exact": int(sum(r["swap_first_exact"] for r in swaps)),
    }


def analyse(data, estimates=None, min_change=MIN_CHANGE, good=GOOD_REGRET):
    """{estimator: {kind: summary, ..., "all": summary}} for the rows of a collect() file."""
    estimates = estimates or ESTIMATES
    rows = data["rows"]
    if list(data.get("players", PLAYERS)) != list(PLAYERS):
        raise ValueError(f"players {data.get('players')} are not export.part_game's {PLAYERS}")
    records = {e: {} for e in estimates}
    for row in rows:
        if len(row["values"]) != 2 ** N or any(x is None for x in row["values"]):
            raise ValueError(f"{row['pair']}: needs all {2 ** N} coalition values")
        v = np.asarray(row["values"], dtype=np.float64)
        exact = exact_shapley(v)
        for name, f in estimates.items():
            phi, count = f(v)
            rec = compare(row, exact, np.asarray(phi), count, min_change)
            records[name].setdefault(row["kind"], []).append(rec)
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    kinds += sorted({r["kind"] for r in rows} - set(kinds))
    out = {}
    for name, by_kind in records.items():
        out[name] = {k: summarise(by_kind[k], good) for k in kinds}
        out[name]["all"] = summarise([r for k in kinds for r in by_kind[k]], good)
    return out


# ---------------------------------------------------------------------------------- report
def _num(x, fmt="{:.3f}"):
    return "-" if x is None else fmt.format(x)


def _coal(c):
    return str(c) if isinstance(c, int) else f"{min(c)}-{max(c)}"


def markdown(summary, min_change=MIN_CHANGE, good=GOOD_REGRET):
    """Three markdown tables: overall; per kind agreement and error; per kind regret/swaps."""
    names = list(summary)
    kinds = [k for k in summary[names[0]] if k != "all"]
    a = summary[names[0]]["all"]
    lines = [f"All {a['pairs']} pairs; regret on the {a['regret_pairs']} with 1 - similarity "
             f">= {min_change}; swap verdicts on the {a['swaps']} swaps that moved the "
             f"similarity by >= {min_change}.", "",
             "| estimator | coalitions | first part = exact | max abs error median / p90 "
             "| regret median / p90 | relative regret median / p90 "
             f"| relative regret < {good} | swapped part first (exact) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in names:
        s = summary[e]["all"]
        lines.append(
            f"| {e} | {_coal(s['coalitions'])} | {s['first_agree']}/{s['pairs']} "
            f"| {_num(s['max_abs_error_median'])} / {_num(s['max_abs_error_p90'])} "
            f"| {_num(s['regret_median'])} / {_num(s['regret_p90'])} "
            f"| {_num(s['relative_regret_median'])} / {_num(s['relative_regret_p90'])} "
            f"| {s['relative_regret_good']}/{s['regret_pairs']} "
            f"| {s['swap_first']}/{s['swaps']} ({s['swap_first_exact']}/{s['swaps']}) |")
    head = "| estimator | " + " | ".join(kinds) + " |"
    rule = "|---|" + "---:|" * len(kinds)
    lines += ["", "First part = exact, and median largest absolute error, per kind of pair:", "",
              head, rule]
    for e in names:
        cells = [f"{summary[e][k]['first_agree']}/{summary[e][k]['pairs']}, "
                 f"{_num(summary[e][k]['max_abs_error_median'])}" for k in kinds]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    lines += ["", f"Relative regret < {good} (pairs with 1 - similarity >= {min_change}), and "
              "for swaps the swapped part ranked first by the estimator (by the exact values):",
              "", head, rule]
    for e in names:
        cells = []
        for k in kinds:
            s = summary[e][k]
            cell = (f"{s['relative_regret_good']}/{s['regret_pairs']}" if s["regret_pairs"]
                    else "-")
            if s["swaps"]:
                cell += f"; swap {s['swap_first']}/{s['swaps']} ({s['swap_first_exact']})"
            cells.append(cell)
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="play the exact game on the study's pairs")
    c.add_argument("model_dir")
    c.add_argument("--out", required=True)
    c.add_argument("--dev", default=DEV_DIR, help="non-ORL development faces with .pts")
    c.add_argument("--device", default="cpu")
    c.add_argument("--threads", type=int, default=2)
    a = sub.add_parser("analyse", help="compare the estimators with the exact values")
    a.add_argument("values", help="a file written by collect")
    a.add_argument("--out", help="write the summary JSON here")
    a.add_argument("--markdown", action="store_true", help="print markdown tables")
    a.add_argument("--min-change", type=float, default=MIN_CHANGE)
    args = p.parse_args(argv)
    if args.command == "collect":
        collect(args.model_dir, args.out, args.dev, args.device, args.threads)
        return 0
    raw = Path(args.values).read_bytes()
    data = json.loads(raw)
    summary = analyse(data, min_change=args.min_change)
    if args.out:
        record = {"values": str(args.values), "values_sha256": hashlib.sha256(raw).hexdigest(),
                  "model": data.get("model"),
                  "min_change": args.min_change, "good_relative_regret": GOOD_REGRET,
                  "summary": summary}
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    if args.markdown:
        print(markdown(summary, args.min_change), end="")
    else:
        print(json.dumps({e: s["all"] for e, s in summary.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
