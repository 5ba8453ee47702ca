"""Crop every face MTCNN finds in some photos: the non-ORL faces of docs/results.md, Part 2.

    python tools/crop_all_faces.py photo.jpg photos/ --out faces/ [--size 224] [--margin 0.2]

zoo.prep and the runtime's --crop keep the largest face of a photo; a check of explanations on
faces that are not ORL wants every face of a group photo as well. Each face MTCNN finds with a
probability of at least --min-prob and a box of at least --min-size pixels is cropped by the
zoo's own rule (zoo.prep.square_crop_box: side max(w, h) * (1 + margin) around the box centre,
outside the image black) and written as <photo stem>_<k>.png, k in MTCNN's order. Every face
left out is named with the reason. Needs facenet-pytorch (a zoo dependency).

The faces we used are not shipped (their licences are their packages'); they came from photos
inside packages on PyPI, listed in docs/results.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.data.images import ImageDecodeError, load_rgb  # noqa: E402
from zoo.exporting.audit import image_paths  # noqa: E402  (files and folders, like the audit)
from zoo.prep import crop_face  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", help="photos or folders of them")
    p.add_argument("--out", required=True, help="folder for the crops")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--margin", type=float, default=0.2)
    p.add_argument("--min-prob", type=float, default=0.95)
    p.add_argument("--min-size", type=float, default=0.0,
                   help="leave out faces whose MTCNN box is smaller (pixels, longer side)")
    args = p.parse_args(argv)
    from facenet_pytorch import MTCNN
    detector = MTCNN(keep_all=True, device="cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in image_paths(args.photos):
        try:
            img = load_rgb(path)
        except ImageDecodeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        boxes, probs = detector.detect(img)
        if boxes is None:
            print(f"{path}: no face")
            continue
        for k, (box, prob) in enumerate(zip(np.asarray(boxes), np.asarray(probs))):
            if prob < args.min_prob:
                print(f"{path}: face {k} left out (probability {prob:.3f} < {args.min_prob})")
                continue
            side = float(max(box[2] - box[0], box[3] - box[1]))
            if side < args.min_size:
                print(f"{path}: face {k} left out (box {side:.0f} px < {args.min_size:g})")
                continue
            face, _ = crop_face(img, box, args.size, args.margin)
            face.save(out / f"{path.stem}_{k}.png")
            written += 1
    print(f"wrote {written} faces to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
