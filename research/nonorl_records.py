"""Per-run records of explanations on faces that are not ORL (docs/results.md, Part 2).

    # audit exports on a folder of face crops; one record per run (NAME = <variant>-s<seed>)
    python -m research.nonorl_records audit --faces val/ --label "non-ORL val" \
        --out docs/results/nonorl_val ecloss-content-free-reflect-beta3-s0=exports/... ...
    # the records of research.ranking_variants' JSON (one run per model and ranking)
    python -m research.nonorl_records ranking rv.json --out docs/results/ranking_val \
        --label "non-ORL val" --first-seed 0

Records are what research.results_tables reads (research.study_tables.load_records: variant,
seed, fold and numbers by column name); an existing record of the same run keeps its other
columns, so one run can carry its numbers on validation and on test faces. Columns, for --label
L:

* "shown on ring (L)": the share of the channels `explain` shows (only channels that fire) whose
  peak lies on the outer ring of the target map (zoo.exporting.audit);
* "faces led by the ring (L)": the share of faces on which at least half of the shown channels
  peak on the ring - the failures come face by face, since the shown channels of one face are
  often near-copies;
* "distinct cells (L)" (ranking records): distinct peak cells among one face's shown channels.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

_RUN = re.compile(r"^(?P<variant>.+)-s(?P<seed>\d+)$")


def _merge(out: Path, variant: str, seed: int, numbers: dict, extra: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{variant}-s{seed}.json"
    rec = json.loads(path.read_text()) if path.exists() else {}
    rec.update({"variant": variant, "seed": seed, "fold": 0}, **numbers, **extra)
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return path


def _face_names(paths):
    return [Path(p).name for p in paths]


def audit_records(runs, faces, label: str, out: Path) -> None:
    from zoo.exporting.audit import audit
    from zoo.metrics.explainability import outer_ring
    for run in runs:
        name, _, export_dir = run.partition("=")
        m = _RUN.match(name)
        if not m or not export_dir:
            raise SystemExit(f"{run!r}: give runs as <variant>-s<seed>=<export folder>")
        res = audit(export_dir, faces)
        n = int(res["shown_per_image"])
        ring = outer_ring(res["map_size"])
        per_face = [sum(bool(ring[r, c]) for r, c in item["cells"]) for item in res["per_image"]]
        shown = [len(item["channels"]) for item in res["per_image"]]
        led = [k for k, s in zip(per_face, shown) if s and 2 * k >= s]
        path = _merge(out, m["variant"], int(m["seed"]), {
            f"shown on ring ({label})": res["shown_ring_share"],
            f"faces led by the ring ({label})": len(led) / len(per_face)},
            {f"ring channels per face ({label})": per_face,
             f"shown channels per face ({label})": shown,
             f"faces ({label})": _face_names(item["image"] for item in res["per_image"]),
             "shown per face at most": n})
        print(f"{path}: {res['shown_ring_share']:.3f} on the ring")


def ranking_records(source: Path, label: str, out: Path, first_seed: int) -> None:
    data = json.loads(source.read_text())
    for k, (model, variants) in enumerate(data["models"].items()):
        for name, v in variants.items():
            per_face, shown = v["ring_per_face"], v["shown_per_face"]
            led = [r for r, s in zip(per_face, shown) if s and 2 * r >= s]
            _merge(out, name, first_seed + k, {
                f"shown on ring ({label})": v["shown_ring_share"],
                f"faces led by the ring ({label})": len(led) / len(per_face),
                f"distinct cells ({label})": v["distinct_cells"]},
                {"model": model, f"ring channels per face ({label})": per_face})
    print(f"{out}: {len(data['models'])} models x {len(variants)} rankings")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("audit")
    a.add_argument("runs", nargs="+", help="<variant>-s<seed>=<export folder>")
    a.add_argument("--faces", nargs="+", required=True)
    a.add_argument("--label", required=True)
    a.add_argument("--out", required=True)
    r = sub.add_parser("ranking")
    r.add_argument("source", help="the JSON of research.ranking_variants --json")
    r.add_argument("--label", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--first-seed", type=int, default=0,
                   help="the seed number of the first model (models are runs of one ranking)")
    args = p.parse_args(argv)
    if args.cmd == "audit":
        audit_records(args.runs, args.faces, args.label, Path(args.out))
    else:
        ranking_records(Path(args.source), args.label, Path(args.out), args.first_seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
