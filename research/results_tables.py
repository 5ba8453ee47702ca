"""Write every table of docs/results.md from the committed per-run records (docs/results/*/).

    python -m research.results_tables            # rewrite the tables in docs/results.md
    python -m research.results_tables --check    # exit 1 when a table differs from the records

A table lives between ``<!-- table:NAME -->`` and ``<!-- /table -->`` in docs/results.md; TABLES
says which records, variants and columns it shows. The numbers are rounded once, here, from the
raw per-run numbers (research.study_tables.summary_table / paired_table); nothing in a table is
typed by hand.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from .quoted import QUOTE, rewrite_quotes, stale_quotes
from .study_tables import load_records, paired_table, runs_table, summary_table

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "docs" / "results"
DOC = ROOT / "docs" / "results.md"
# other pages whose prose quotes the records (research.quoted markers; no tables)
QUOTING_DOCS = [ROOT / "README.md", ROOT / "docs" / "paper-notes.md"]

# LS (the paper's) is computed over the regions that land on some part: "none" (the share of
# regions on no part) stands beside it wherever it appears
METRICS = ["accuracy", "AUC", "PE", "LS", "none", "LS-max (ours)", "peaks", "peaks@0.1 ring",
           "peaks@0.1 interior"]
INPUT_DEPENDENCE = ["fixed-cell channels", "input dependence", "shown on ring",
                    "strongest on ring", "shift follows", "shift stays", "position channels"]
PAIRED = ["accuracy", "PE", "LS", "none", "fixed-cell channels", "shown on ring", "shift follows",
          "position channels"]
REMEDIES = ["softmax", "ecloss-tau1-fixed1", "ecloss-reflect", "ecloss-circular",
            "ecloss-translate", "ecloss-interior", "ecloss-content-free", "ecloss-content-free-5",
            "ecloss-content-free-reflect", "ecloss-content-free-circular",
            "ecloss-content-free-reflect-interior", "ecloss-content-free-reflect-translate",
            "ecloss-content-free-uncapped", "ecloss-content-free-0.1-uncapped",
            "ecloss-content-free-reflect-uncapped", "ecloss-content-free-batch-uncapped",
            "ecloss-content-free-reflect-beta0.1", "ecloss-content-free-reflect-beta0.3",
            "ecloss-content-free-reflect-beta3", "ecloss-content-free-reflect-beta10",
            "ecloss-content-free-reflect-background",
            "ecloss-content-free-reflect-beta3-background", "softmax-reflect-background",
            "ecloss-content-free-reflect-beta3-shuffled",
            "ecloss-content-free-reflect-beta3-offhead1",
            "ecloss-content-free-reflect-beta3-offhead3"]
# the training remedies tried after beta 3 became the default, against it
REMEDIES_BETA3 = ["softmax", "ecloss-content-free-reflect-beta3-background",
                  "ecloss-content-free-reflect-beta3-shuffled",
                  "ecloss-content-free-reflect-beta3-offhead1",
                  "ecloss-content-free-reflect-beta3-offhead3"]
# the runs of the beta sweep and of background randomisation, against the default they change
REMEDIES_SINCE = ["softmax", "ecloss-content-free-reflect-beta0.1",
                  "ecloss-content-free-reflect-beta0.3", "ecloss-content-free-reflect-beta3",
                  "ecloss-content-free-reflect-beta10", "ecloss-content-free-reflect-background",
                  "ecloss-content-free-reflect-beta3-background"]
STUDY14_VAL = ["softmax", "ecloss", "ecloss-tau1-fixed1", "ecloss-reflect",
               "ecloss-content-free-reflect", "ecloss-reflect-beta3",
               "ecloss-content-free-reflect-beta3"]
STUDY14 = ["softmax", "ecloss", "ecloss-content-free-reflect", "ecloss-reflect",
           "ecloss-content-free-reflect-beta3", "ecloss-content-free-reflect-permuted",
           "untrained", "ecloss-content-free-reflect+shuffled", "softmax+shuffled"]
STUDY14_PAIRED = ["ecloss", "ecloss-content-free-reflect", "ecloss-reflect",
                  "ecloss-content-free-reflect-beta3", "ecloss-content-free-reflect-permuted"]

# the faces that are not ORL (research/nonorl_records.py): validation runs of the remedies, the
# ways to rank what explain shows, and the make-demo-setting models
NONORL_VAL = ["softmax", "ecloss-content-free-reflect", "ecloss-content-free-reflect-beta3",
              "ecloss-content-free-reflect-beta3-background",
              "ecloss-content-free-reflect-beta3-shuffled",
              "ecloss-content-free-reflect-beta3-offhead1",
              "ecloss-content-free-reflect-beta3-offhead3"]
NONORL_VAL_COLUMNS = ["shown on ring (non-ORL val)", "faces led by the ring (non-ORL val)"]
RANKINGS = ["evidence", "place-hard", "place-soft", "cap1", "cap2", "cap3", "mmr0.3", "mmr1",
            "grey"]
RANKING_COLUMNS = NONORL_VAL_COLUMNS + ["distinct cells (non-ORL val)"]
NONORL_DEMO = ["softmax", "first-default", "second-default", "default-make-demo", "default"]
DEMO_ORL_COLUMNS = ["accuracy (ORL test)", "AUC (ORL test)", "PE (ORL test)", "LS (ORL test)",
                    "peaks (ORL test)", "fixed-cell channels (ORL test)",
                    "shown on ring (ORL test)", "shift follows (ORL test)",
                    "position channels (ORL test)", "shown on ring (non-ORL test)",
                    "fixed-cell channels (non-ORL test)"]
FIT_ELSEWHERE_COLUMNS = ["accuracy", "LS", "none", "fixed-cell channels",
                         "shown on ring (fit: same)", "shown on ring (fit: halves)",
                         "shown on ring (fit: train)", "shown shift follows (fit: same)",
                         "shown shift follows (fit: halves)", "shown shift follows (fit: train)"]
NONORL_DEMO_COLUMNS = ["shown on ring (non-ORL val)", "shown on ring (non-ORL test)",
                       "faces led by the ring (non-ORL val)",
                       "faces led by the ring (non-ORL test)"]

# name: (kind, records folder, variants, columns, reference for "paired")
TABLES = {
    "remedies-metrics": ("summary", "remedies", REMEDIES, METRICS, None),
    "remedies-input-dependence": ("summary", "remedies", REMEDIES, INPUT_DEPENDENCE, None),
    "remedies-paired": ("paired", "remedies", REMEDIES, PAIRED, "ecloss-tau1-fixed1"),
    "remedies-paired-beta1": ("paired", "remedies", REMEDIES_SINCE, PAIRED,
                              "ecloss-content-free-reflect"),
    "remedies-paired-beta3": ("paired", "remedies", REMEDIES_BETA3, PAIRED,
                              "ecloss-content-free-reflect-beta3"),
    "study14-val-metrics": ("summary", "study14-val", STUDY14_VAL, METRICS, None),
    "study14-val-input-dependence": ("summary", "study14-val", STUDY14_VAL, INPUT_DEPENDENCE,
                                     None),
    "study14-metrics": ("summary", "study14", STUDY14, METRICS, None),
    "study14-input-dependence": ("summary", "study14", STUDY14, INPUT_DEPENDENCE, None),
    "study14-paired": ("paired", "study14", STUDY14_PAIRED, PAIRED, "softmax"),
    "study14-paired-permuted": ("paired", "study14", ["ecloss-content-free-reflect"],
                                PAIRED, "ecloss-content-free-reflect-permuted"),
    "nonorl-val": ("summary", "nonorl_val", NONORL_VAL, NONORL_VAL_COLUMNS, None),
    "nonorl-val-paired": ("paired", "nonorl_val", NONORL_VAL, NONORL_VAL_COLUMNS,
                          "ecloss-content-free-reflect-beta3"),
    "ranking-val": ("summary", "ranking_val", RANKINGS, RANKING_COLUMNS, None),
    "ranking-val-paired": ("paired", "ranking_val", RANKINGS, RANKING_COLUMNS, "evidence"),
    "nonorl-demo": ("summary", "nonorl_demo", NONORL_DEMO, NONORL_DEMO_COLUMNS, None),
    "demo-orl": ("runs", "nonorl_demo", NONORL_DEMO, DEMO_ORL_COLUMNS, None),
    "fit-elsewhere": ("runs", "fit_elsewhere", ["make-demo-zoo"],
                      FIT_ELSEWHERE_COLUMNS, None),
    "study14-w4": ("summary", "study14-w4", ["softmax", "ecloss-content-free-reflect"],
                   ["accuracy", "AUC", "PE", "LS", "none", "peaks", "MI@tau=1 uniform",
                    "fixed-cell channels", "shown on ring", "shift follows"], None),
}

# The part-swap game (Part 3): zoo.swap_game's records, not study records.
SWAP = RESULTS / "swap_game"
SWAP_FULL = [  # (label, record): runs with both views
    ("validation (all: pairwise estimator): ORL training identities, 20 pairs, seed 0 (blur "
     "fill, rigid shape)",
     "val-orl-train-blur.json"),
    ("validation: ORL training identities, 20 pairs, seed 0 (mean fill, rigid shape)",
     "val-orl-train-mean.json"),
    ("validation: ORL training identities, 40 pairs, seed 1 (mean fill, rigid shape)",
     "val-orl-train-mean-seed1.json"),
    ("validation: ORL training identities, 20 pairs, seed 0 (mean, regression)",
     "val/orl-train-s0-regression-mean.json"),
    ("validation: ORL training identities, 40 pairs, seed 1 (mean, regression)",
     "val/orl-train-s1-regression-mean.json"),
    ("validation: ORL training identities, 40 pairs, seed 1 (blur, regression)",
     "val/orl-train-s1-regression-blur.json"),
    ("validation: non-ORL dev faces, 40 pairs (mean, rigid)", "val/dev-rigid-mean.json"),
    ("validation: non-ORL dev faces, 40 pairs (mean, regression)",
     "val/dev-regression-mean.json"),
    ("validation: non-ORL dev faces, 40 pairs (blur, regression)",
     "val/dev-regression-blur.json"),
    ("**test: ORL held-out identities, 40 pairs (the defaults then: flip-TTA export)**",
     "test/orl-heldout-vgg19-ecloss-s0.json"),
    ("**test: non-ORL test faces, 40 pairs (the defaults then: flip-TTA export)**",
     "test/nonorl-test-vgg19-ecloss-s0.json"),
    ("test, another model: non-ORL test faces, ECLoss seed 1",
     "test/nonorl-test-vgg19-ecloss-s1.json"),
    ("test, another model: non-ORL test faces, softmax seed 0",
     "test/nonorl-test-vgg19-softmax-s0.json"),
    ("validation, one-view export (the default since the speed decision; kernel): ORL "
     "training identities, 20 pairs, seed 0", "val/orl-train-s0-oneview.json"),
    ("validation, one-view export: non-ORL dev faces, 40 pairs", "val/dev-oneview.json"),
    ("**test2: 40 fresh non-ORL faces, 40 pairs, one-view export (defaults)**",
     "test/nonorl-test2-vgg19-ecloss-s0-oneview.json"),
    ("test2, the same model's flip-TTA export", "test/nonorl-test2-vgg19-ecloss-s0-flip.json"),
    ("ORL held-out identities, 40 pairs, one-view export (spent: seen with the flip-TTA "
     "export)", "test/orl-heldout-vgg19-ecloss-s0-oneview.json"),
    ("reference model dlib-resnet: ORL held-out identities, 20 pairs (defaults)",
     "../dlib_resnet/swap_orl_heldout.json"),
    ("reference model dlib-resnet: non-ORL dev faces, 40 pairs (defaults)",
     "../dlib_resnet/swap_nonorl_dev.json"),
    ("reference model dlib-resnet: non-ORL test faces, 40 pairs (defaults)",
     "../dlib_resnet/swap_nonorl_test.json"),
    ("reference model dlib-resnet: test2 (40 fresh non-ORL faces), 40 pairs (defaults)",
     "../dlib_resnet/swap_nonorl_test2.json"),
]
SWAP_MODELS = [("softmax, 7 x 7 (cpu preset)", "vgg19-softmax-s{}", (0, 1, 2)),
               ("ECLoss, 7 x 7 (cpu preset)", "vgg19-ecloss-s{}", (0, 1, 2)),
               ("softmax, 14 x 14 (width 1/8)", "vgg19-softmax-14-s{}", (0, 1)),
               ("ECLoss, 14 x 14 (width 1/8, gpu preset's ECLoss)", "vgg19-ecloss-14-s{}",
                (0, 1))]


def _count(score) -> str:
    if score is None or not score["n_counted"]:
        return "n/a"
    return f"{score['n_first']}/{score['n_counted']} ({score['n_first'] / score['n_counted']:.2f})"


def render_swap_full() -> str:
    lines = ["| run | swaps moved >= 0.02 | intervention: swapped part first | eyes | nose | "
             "mouth | channel view: swapped part first |", "|---|---|---|---|---|---|---|"]
    for label, name in SWAP_FULL:
        path = SWAP / name
        if not path.is_file():
            continue
        sc = json.loads(path.read_text())["scores"]
        iv, ch = sc["intervention"], sc.get("channels")
        by = [_count(iv["by_part"].get(p)) for p in ("eyes", "nose", "mouth")]
        total = iv["n_counted"] + iv["n_below_min_change"]
        lines.append(f"| {label} | {iv['n_counted']} of {total} | {_count(iv)} | "
                     + " | ".join(by) + f" | {_count(ch)} |")
    return "\n".join(lines) + "\n"


def render_swap_channels() -> str:
    lines = ["| model | ORL held-out, per seed | ORL held-out, mean +- std | non-ORL test, per "
             "seed | non-ORL test, mean +- std |", "|---|---|---|---|---|"]
    for label, pattern, seeds in SWAP_MODELS:
        cells = []
        for where in ("orl-heldout", "nonorl-test"):
            shares, per = [], []
            for seed in seeds:
                path = SWAP / "test" / f"{where}-{pattern.format(seed)}-channels.json"
                if not path.is_file():
                    per.append("-")
                    continue
                sc = json.loads(path.read_text())["scores"]["channels"]
                per.append(_count(sc))
                if sc["n_counted"]:
                    shares.append(sc["n_first"] / sc["n_counted"])
            mean = ("n/a" if not shares else f"{np.mean(shares):.3f}"
                    + (f" +- {np.std(shares, ddof=1):.3f}" if len(shares) > 1 else ""))
            cells += ["; ".join(per), mean]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


DLIB = RESULTS / "dlib_resnet"


def render_dlib_verification() -> str:
    """dlib-resnet through the runtime (detector -> 5 points -> chip): all pairs of each set."""
    lines = ["| faces | model | pairs (same person) | accuracy at the threshold | TPR | TNR "
             "| AUC |", "|---|---|---|---|---|---|---|"]
    labelled = [r for name in ("verification.json", "nonorl_dev_verification.json")
                for r in json.loads((DLIB / name).read_text())]
    for r in labelled:
        lines.append(f"| {r['set']} | {r['model']} | {r['pairs']} ({r['same_pairs']}) | "
                     f"{r['accuracy_at_threshold']:.4f} | {r['tpr_at_threshold']:.3f} | "
                     f"{r['tnr_at_threshold']:.4f} | {r['auc']:.4f} |")
    for r in json.loads((DLIB / "nonorl_test_verification.json").read_text()):
        lines.append(f"| non-ORL test faces (26 people) | {r['model']} | {r['pairs']} (0) | "
                     f"{1 - r['false_match_rate']:.4f} ({r['false_matches']} false matches, "
                     f"{r['false_matches_same_photo']} of them within one photo) | n/a | "
                     f"{1 - r['false_match_rate']:.4f} | n/a |")
    return "\n".join(lines) + "\n"


SWAP_TABLES = {"swap-full": render_swap_full, "swap-channels": render_swap_channels,
               "dlib-verification": render_dlib_verification}

_BLOCK = re.compile(r"(<!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def render(name: str) -> str:
    if name in SWAP_TABLES:
        return SWAP_TABLES[name]()
    kind, folder, variants, columns, reference = TABLES[name]
    runs = load_records(RESULTS / folder)
    shown = [v for v in variants if v in runs or v == reference]
    if kind == "summary":
        return summary_table(runs, columns, shown)
    if kind == "runs":
        return runs_table(runs, columns, shown)
    return paired_table(runs, columns, reference, shown)


def rewrite(text: str) -> str:
    """``text`` with every table and every quoted number (research.quoted) written from the
    records."""
    def sub(m):
        if m.group("name") not in TABLES and m.group("name") not in SWAP_TABLES:
            raise SystemExit(f"{DOC}: unknown table {m.group('name')!r}; known: {sorted(TABLES)}")
        return m.group(1) + render(m.group("name")) + m.group(4)
    return rewrite_quotes(_BLOCK.sub(sub, text))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare, do not write")
    args = p.parse_args(argv)
    text = DOC.read_text()
    new = rewrite(text)
    if args.check:
        stale = [m.group("name") for m, n in zip(_BLOCK.finditer(text), _BLOCK.finditer(new))
                 if m.group("body") != n.group("body")]
        quotes = stale_quotes(text) + [f"{d.name}: {q}" for d in QUOTING_DOCS
                                        for q in stale_quotes(d.read_text())]
        if stale or quotes:
            print(f"{DOC}: tables differ from the records: {', '.join(stale) or 'none'}; quoted "
                  f"numbers that differ: {'; '.join(quotes) or 'none'}; run "
                  "python -m research.results_tables")
            return 1
        print(f"{DOC}: {len(list(_BLOCK.finditer(text)))} tables and "
              f"{len(list(QUOTE.finditer(text)))} quoted numbers match the records")
        return 0
    DOC.write_text(new)
    for d in QUOTING_DOCS:
        other = d.read_text()
        if rewrite_quotes(other) != other:
            d.write_text(rewrite_quotes(other))
    return 0


if __name__ == "__main__":
    sys.exit(main())
