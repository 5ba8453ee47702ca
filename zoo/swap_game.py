"""The part-swap game on an exported model: do its explanations name the part that changed?

    python -m zoo.swap_game out/vgg19-ecloss --orl heldout --pairs 40 --out game.json
    python -m zoo.swap_game out/vgg19-ecloss --faces faces/ --pairs 40 --out game.json

For each pair (A, B) of faces of different people and each part in SWAP_PARTS, B's part is
aligned by the 68 landmarks and pasted into A (zoo.metrics.faithfulness.swap_part), giving A'.
Only that part changed, so ``verify(A, A', explain=True)`` should put the largest share of
1 - similarity on it. Both views are scored: the intervention view (PairEvidence.parts) and the
channel view (the channel split, channels labelled on these faces). The explanation uses the
runtime's own landmarks (as a user gets them), never the annotations the swap was made with.
Writes one row per swap; the score is the share of swaps that moved the similarity by at least
``min_change`` whose swapped part was ranked first (zoo.metrics.faithfulness.swap_game_score).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from export.match_evidence import MatchExplainer
from zoo.metrics.faithfulness import SWAP_PARTS, swap_game_score, swap_part, swapped_part_first

__all__ = ["Face", "orl_faces", "folder_faces", "pair_faces", "play_swap_game", "summarise",
           "swap_game_metric", "main"]

Face = Tuple[str, str, Image.Image, np.ndarray]   # (key, identity, RGB image, (68, 2) points)


def orl_faces(split: str = "heldout", num_train: int = 30, num_val: int = 0,
              seed: int = 0) -> List[Face]:
    """ORL faces of one identity split with their shipped 68-point landmarks."""
    from zoo.data.orl import orl_identity_splits, orl_landmark_table, orl_root
    train, val, heldout = orl_identity_splits(num_train, num_val, seed)
    ids = {"train": train, "val": val, "heldout": heldout}[split]
    table, _ = orl_landmark_table()
    root = orl_root()
    faces = []
    for i in ids:
        for k in range(1, 11):
            key = f"s{i}/{k}.pgm"
            img = Image.open(root / key).convert("RGB")
            faces.append((key, f"s{i}", img, np.asarray(table[key], np.float64)))
    return faces


def folder_faces(root) -> List[Face]:
    """Face crops with iBUG .pts files beside them; the identity is the file name up to the
    first '__' (or the whole name), so two photos of one person are never paired."""
    from zoo.data.landmarks import LandmarkFolder
    folder = LandmarkFolder(root)
    faces = []
    for i, path in enumerate(folder.paths):
        img, pts, _ = folder.item(i)
        faces.append((path.name, path.stem.split("__")[0], img, np.asarray(pts, np.float64)))
    return faces


def pair_faces(faces: Sequence[Face], n_pairs: int, seed: int = 0) -> List[Tuple[int, int]]:
    """``n_pairs`` (A, B) index pairs of different identities, each A used once while it can
    be (seeded; the same faces and seed give the same pairs)."""
    rng = np.random.default_rng(seed)
    ids = [f[1] for f in faces]
    if len(set(ids)) < 2:
        raise ValueError("the swap game needs faces of at least two people")
    pairs: List[Tuple[int, int]] = []
    order = list(rng.permutation(len(faces)))
    while len(pairs) < n_pairs:
        if not order:
            order = list(rng.permutation(len(faces)))
        a = int(order.pop())
        others = [j for j in range(len(faces)) if ids[j] != ids[a]]
        pairs.append((a, int(rng.choice(others))))
    return pairs


def play_swap_game(explainer: MatchExplainer, faces: Sequence[Face],
                   pairs: Iterable[Tuple[int, int]], parts: Sequence[str] = SWAP_PARTS,
                   use_annotations: bool = False, channels_only: bool = False) -> List[Dict]:
    """One row per swap: the similarity change and both views' shares per part
    (channels_only: the channel view alone, for studies of the channels)."""
    rows = []
    for a, b in pairs:
        key_a, _, img_a, pts_a = faces[a]
        key_b, _, img_b, pts_b = faces[b]
        for part in parts:
            swapped = swap_part(img_a, pts_a, img_b, pts_b, part).image
            given = (pts_a, pts_a) if use_annotations else None
            if channels_only:  # the channel view alone: one pass, no game
                located, masks = explainer.locate_parts([img_a, swapped], given)
                cv = explainer.channels.explain(img_a, swapped, part_masks=masks)
                ch = {p.part: p.difference for p in cv.parts}
                rows.append({"a": key_a, "b": key_b, "part": part,
                             "similarity": cv.similarity, "change": 1 - cv.similarity,
                             "landmarks": [f.source for f in located], "channel_difference": ch,
                             "channel_ranked_first": swapped_part_first(ch, part)})
                continue
            ev = explainer.explain(img_a, swapped, landmarks=given)
            row = {"a": key_a, "b": key_b, "part": part, "similarity": ev.similarity,
                   "change": 1.0 - ev.similarity, "landmarks": list(ev.landmarks),
                   "difference": {p.part: p.difference for p in ev.parts},
                   "other": ev.other,
                   "ranked_first": swapped_part_first({p.part: p.difference for p in ev.parts},
                                                      part)}
            if ev.channel_view is not None:
                ch = {p.part: p.channel_difference for p in ev.parts}
                row["channel_difference"] = ch
                row["channel_ranked_first"] = swapped_part_first(ch, part)
            rows.append(row)
    return rows


def summarise(rows: Sequence[Dict], min_change: float = 0.02) -> Dict:
    """Both views' scores (zoo.metrics.faithfulness.swap_game_score)."""
    out = {}
    if rows and "ranked_first" in rows[0]:
        out["intervention"] = swap_game_score(rows, min_change)
    if rows and "channel_ranked_first" in rows[0]:
        ch = [dict(r, ranked_first=r["channel_ranked_first"]) for r in rows]
        out["channels"] = swap_game_score(ch, min_change)
    return out


def swap_game_metric(export_dir, split: str = "heldout", pairs: int = 40, seed: int = 0,
                     min_change: float = 0.02) -> Dict:
    """The game as an evaluation metric: both views' scores on ORL faces of ``split`` with the
    runtime's defaults (what zoo.evaluate --swap-game stores)."""
    faces = orl_faces(split)
    explainer = MatchExplainer(export_dir, device="cpu")
    rows = play_swap_game(explainer, faces, pair_faces(faces, pairs, seed))
    return {"split": split, "pairs": pairs, "seed": seed, "estimator": explainer.estimator,
            "fill": explainer.fill, **summarise(rows, min_change)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.swap_game", description=__doc__.split("\n")[0])
    p.add_argument("model",
                   help="an exported model folder (python -m zoo.exporting NAME --out DIR)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--orl", choices=("train", "val", "heldout"),
                     help="ORL faces of this identity split (30 training identities, seed 0)")
    src.add_argument("--faces", help="a folder of face crops with .pts landmarks beside them")
    p.add_argument("--pairs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-change", type=float, default=0.02)
    p.add_argument("--estimator", default="kernel", choices=("kernel", "pairwise", "exact"))
    p.add_argument("--fill", default="mean", choices=("mean", "blur"))
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    p.add_argument("--channels-only", action="store_true",
                   help="score the channel view alone (no game: one pass per swap)")
    p.add_argument("--annotations", action="store_true",
                   help="explain with the annotated landmarks instead of the runtime's own")
    p.add_argument("--out", default=None, help="write the rows and scores as JSON here")
    args = p.parse_args(argv)
    faces = orl_faces(args.orl) if args.orl else folder_faces(args.faces)
    explainer = MatchExplainer(args.model, device="cpu", threads=args.threads,
                               estimator=args.estimator, fill=args.fill)
    rows = play_swap_game(explainer, faces, pair_faces(faces, args.pairs, args.seed),
                          use_annotations=args.annotations,
                          channels_only=args.channels_only)
    scores = summarise(rows, args.min_change)
    record = {"model": str(args.model), "faces": args.orl or str(args.faces),
              "pairs": args.pairs, "seed": args.seed, "estimator": args.estimator,
              "fill": args.fill, "annotations": args.annotations,
              "min_change": args.min_change, "channels_only": args.channels_only,
              "scores": scores, "rows": rows}
    print(json.dumps(scores, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
