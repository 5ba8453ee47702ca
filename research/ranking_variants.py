"""Ways to choose the channels `explain` shows, measured on face crops (docs/results.md, Part 2).

    python -m research.ranking_variants EXPORT_DIR [EXPORT_DIR ...] --faces faces/ \
        [--num-train 30 --num-val 0 --split heldout] [--json out.json]

For every export (a folder written by `python -m zoo.exporting`) and every face in --faces, the 8
channels each variant shows (like `explain`, only channels that fire on the face), and of them:
the share whose peak is on the 7 x 7 map's outer ring and the number of distinct peak cells per
face. Variants:

* ``evidence``: the runtime's ranking by evidence alone (export.channel_table.rank_channels without
  the place term), the reference;
* ``cap1`` / ``cap2`` / ``cap3``: the same order, at most 1 / 2 / 3 shown channels per peak cell
  (near-copies of one channel give way to the next distinct place);
* ``mmr0.3`` / ``mmr1``: maximal marginal relevance, score / best score - lambda x the largest
  cosine similarity of the channel's map to one already shown;
* ``place-soft`` / ``place-hard``: the score times how usual this place is for the channel: the
  share of its activation that lies where it fires on ORL faces (its mean activation distribution
  there, divided by its maximum), or the ORL frequency of this peak cell (smoothed, divided by the
  most frequent cell's; silent maps not counted). The ORL faces are --split of the split the
  model was trained with. ``place-hard`` is what the runtime does since it was chosen here (for
  maps of at most 7 x 7); ``place-pooled`` is the same with the counts of larger maps pooled to
  blocks so that the grid is at most 7 x 7 (the same as place-hard at 7 x 7);
* ``grey``: the reference ranking on the faces converted to grey first (ORL is grey).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from export.channel_table import MAX_RELATIVE_PEAK, SHOWN_CHANNELS, place_agreement, rank_channels
from export.explainer import FaceExplainer
from export.images import load_image
from zoo.exporting.audit import image_paths, target_maps
from zoo.metrics.explainability import outer_ring
from zoo.metrics.input_dependence import peak_cell_counts


def _batched_maps(explainer, images):
    return np.concatenate([target_maps(explainer, images[i:i + 16])
                           for i in range(0, len(images), 16)])


def spatial_distribution(maps: np.ndarray) -> np.ndarray:
    """(I, C, n, n) -> (I, C, n*n): each map's positive part as a distribution over its cells
    (uniform for a map with no positive cell)."""
    f = np.maximum(maps.reshape(*maps.shape[:2], -1), 0.0)
    s = f.sum(-1, keepdims=True)
    return np.divide(f, s, out=np.full_like(f, 1.0 / f.shape[-1]), where=s > 0)


def capped(order, cells, cap, k=SHOWN_CHANNELS):
    """``order`` with at most ``cap`` channels per peak cell among the first ``k``."""
    count, out = {}, []
    for c in order:
        if count.get(cells[c], 0) < cap:
            out.append(c)
            count[cells[c]] = count.get(cells[c], 0) + 1
            if len(out) == k:
                return out
    return out + [c for c in order if c not in out][:k - len(out)]


def mmr(order, flat, score, lam, k=SHOWN_CHANNELS):
    f = np.maximum(flat, 0.0)
    f = f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)
    cand = [c for c in order if score[c] > 0]
    if not cand:
        return order[:k]
    s = score / max(float(score[cand].max()), 1e-12)
    out = [cand[0]]
    while len(out) < min(k, len(cand)):
        rest = [c for c in cand if c not in out]
        val = [s[c] - lam * max(float(f[c] @ f[o]) for o in out) for c in rest]
        out.append(rest[int(np.argmax(val))])
    return out + [c for c in order if c not in out][:k - len(out)]


def measure(export_dir, faces, orl_images):
    ex = FaceExplainer(export_dir)
    if not ex.parts or "channel_evidence" not in ex.parts:
        raise ValueError(f"{export_dir}: no evidence table (export a model evaluated by "
                         "zoo.evaluate)")
    imgs = [load_image(p) for p in faces]
    maps = _batched_maps(ex, imgs)
    grey = _batched_maps(ex, [np.repeat(np.asarray(im.convert("L"))[..., None], 3, 2)
                              for im in imgs])
    orl = _batched_maps(ex, orl_images)
    n = maps.shape[-1]
    ring = outer_ring(n).ravel()
    prior = spatial_distribution(orl).mean(0)
    prior = prior / prior.max(-1, keepdims=True)
    counts = peak_cell_counts(orl)                   # what zoo.evaluate stores
    b = -(-n // 7)                                   # block side: a grid of at most 7 x 7 blocks
    g = -(-n // b)
    block = ((np.arange(n)[:, None] // b) * g + np.arange(n)[None, :] // b).ravel()
    pooled = np.stack([np.bincount(block, weights=row, minlength=g * g) for row in counts])
    evidence = np.asarray(ex.parts["channel_evidence"])
    typical = np.asarray(ex.parts["channel_typical_peak"])
    shown = {}
    for i in range(len(imgs)):
        flat = maps[i].reshape(maps.shape[1], -1)
        peaks, cells = flat.max(-1), flat.argmax(-1)
        rel = np.minimum(np.divide(peaks, typical, out=np.zeros_like(peaks), where=typical > 0),
                         MAX_RELATIVE_PEAK)
        score = evidence * rel
        ref = rank_channels(peaks, ex.parts)
        gflat = grey[i].reshape(grey.shape[1], -1)
        soft = (spatial_distribution(maps[i][None])[0] * prior).sum(-1)
        hard = place_agreement(cells, counts)
        variants = {
            "evidence": (ref, cells), "cap1": (capped(ref, cells, 1), cells),
            "cap2": (capped(ref, cells, 2), cells), "cap3": (capped(ref, cells, 3), cells),
            "mmr0.3": (mmr(ref, flat, score, 0.3), cells),
            "mmr1": (mmr(ref, flat, score, 1.0), cells),
            "place-soft": ([int(c) for c in np.lexsort((-peaks, -score * soft))], cells),
            "place-hard": ([int(c) for c in np.lexsort((-peaks, -score * hard))], cells),
            "place-pooled": ([int(c) for c in np.lexsort(
                (-peaks, -score * place_agreement(block[cells], pooled)))], cells),
            "grey": (rank_channels(gflat.max(-1), ex.parts), gflat.argmax(-1)),
        }
        for name, (order, where) in variants.items():
            fires = gflat.max(-1) if name == "grey" else peaks
            top = [c for c in order if fires[c] > 0][:SHOWN_CHANNELS]
            rec = shown.setdefault(name, {"ring": [], "distinct": [], "shown": []})
            rec["shown"].append(len(top))
            rec["ring"].append(int(sum(bool(ring[where[c]]) for c in top)))
            rec["distinct"].append(len({int(where[c]) for c in top}))
    return {name: {"shown_ring_share": float(np.sum(r["ring"])) / max(1, sum(r["shown"])),
                   "distinct_cells": float(np.mean(r["distinct"])),
                   "ring_per_face": r["ring"], "shown_per_face": r["shown"]}
            for name, r in shown.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exports", nargs="+")
    p.add_argument("--faces", nargs="+", required=True, help="face crops or folders of them")
    p.add_argument("--num-train", type=int, default=30)
    p.add_argument("--num-val", type=int, default=0)
    p.add_argument("--split", default="heldout", help="the ORL faces of the place prior")
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args(argv)
    from zoo.data.orl import ORLFaces
    ds = ORLFaces(args.split, transform=None, num_train=args.num_train, num_val=args.num_val)
    orl_images = [ds.load(i) for i in range(len(ds))]
    faces = image_paths(args.faces)
    out = {"faces": [str(f) for f in faces], "orl_split": args.split,
           "orl_num_train": args.num_train, "orl_num_val": args.num_val, "models": {}}
    for e in args.exports:
        out["models"][Path(e).name] = res = measure(e, faces, orl_images)
        print(Path(e).name, " ".join(f"{k} {v['shown_ring_share']:.3f}/{v['distinct_cells']:.1f}"
                                     for k, v in res.items()), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
