"""``python -m export.runtime verify|explain``: the runtime's command line (onnxruntime + numpy +
Pillow only; never torch).

    python -m export.runtime verify A.jpg B.jpg --model out/ [--explain why.png] [--json]
    python -m export.runtime explain A.jpg --model out/ --out heat.png [--top-k 8] [--json]

A thin layer over export.verifier.FaceVerifier and export.explainer.FaceExplainer (their API is
the library's: docs/export.md). Faces are detected by default (export.face_input, crop "auto":
a photo that is already a face crop is used as is, else the largest face is cropped; dlib's
ResNet gets its aligned chip); ``--crop`` always crops the largest face, ``--no-crop`` uses the
image as given. No face or several faces: a warning line on stderr (and "inputs" in --json).
Exit status 0, or 2 with one line on stderr naming the file for a bad input or model folder.
"""
from __future__ import annotations

import argparse
import json
import sys

from .explainer import DEFAULT_TOP_K, FaceExplainer, overlay_format, save_picture
from .images import ImageError
from .model_dir import PRECISIONS, ModelDirError
from .verifier import FaceVerifier

__all__ = ["main"]


def _warn(inputs) -> None:
    for f in inputs:
        if f.note:
            print(f"warning: {f.name}: {f.note}", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.runtime",
                                description="Verify or explain faces with an exported zoo model "
                                            "(onnxruntime only). See docs/export.md.")
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True,
                        help="folder written by `python -m zoo.exporting`")
    common.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    common.add_argument("--precision", default="float", choices=PRECISIONS,
                        help="int8: the quantized model of `python -m zoo.exporting --int8` "
                             "(default: float)")
    crop = common.add_mutually_exclusive_group()
    crop.add_argument("--crop", dest="crop", action="store_const", const="always",
                      default="auto",
                      help="always crop the largest face found by the export's detector/ (the "
                           "default detects too, but uses a photo that is already a face crop "
                           "as it is)")
    crop.add_argument("--no-crop", dest="crop", action="store_const", const="never",
                      help="use the images as given (face crops); no detection")
    v = sub.add_parser("verify", parents=[common], help="same person or not")
    v.add_argument("image_a")
    v.add_argument("image_b")
    v.add_argument("--threshold", type=float, default=None,
                   help="cosine threshold (default: the one chosen at evaluation)")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.add_argument("--landmarks", nargs=2, metavar=("A.pts", "B.pts"), default=None,
                   help="68-point landmarks of the two faces (iBUG .pts, or 68 'x y' lines) "
                        "for the part masks of --explain (default: found by the runtime)")
    v.add_argument("--estimator", default="kernel", choices=("kernel", "pairwise", "exact"),
                   help="--explain's Shapley values: kernel (74 coalitions, default), pairwise "
                        "(18: fastest, least accurate) or exact (256); docs/export.md")
    v.add_argument("--explain", default=None, metavar="OUT",
                   help="also print the per-part evidence table and write its picture to OUT "
                        "(.png, .jpg, .jpeg or .webp): the two faces, heatmaps of each part's "
                        "strongest channels, a bar chart of the per-part evidence")
    e = sub.add_parser("explain", parents=[common], help="heatmaps of the strongest channels")
    e.add_argument("image")
    e.add_argument("--out", default=None,
                   help="overlay image to write (.png, .jpg, .jpeg or .webp); without it the "
                        "channel table is printed only")
    e.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    e.add_argument("--json", action="store_true", help="print the channels as JSON")
    e.add_argument("--landmarks", default=None, metavar="FACE.pts",
                   help="68-point landmarks of the face for the per-face channel labels "
                        "(default: found by the runtime)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "verify":
            if args.explain is not None:
                overlay_format(args.explain)  # a bad output name fails before the model runs
            verifier = FaceVerifier(args.model, threshold=args.threshold, device=args.device,
                                    precision=args.precision,
                                    estimator=args.estimator)
            r = verifier.verify(args.image_a, args.image_b, explain=args.explain is not None,
                                landmarks=args.landmarks, crop=args.crop)
            _warn(r.inputs)
            if r.evidence is not None:
                save_picture(r.evidence.render(), args.explain)
            if args.json:
                out = {"similarity": r.similarity, "threshold": r.threshold, "same": r.same,
                       "inputs": [f.to_dict() for f in r.inputs]}
                if r.evidence is not None:
                    out.update(evidence=r.evidence.to_dict(), picture=args.explain)
                print(json.dumps(out))
            else:
                print(r)
                if r.evidence is not None:
                    print(r.evidence.table())
                    print(f"wrote {args.explain}")
        else:
            explainer = FaceExplainer(args.model, device=args.device, precision=args.precision)
            x = explainer.explain(args.image, top_k=args.top_k, out=args.out,
                                  landmarks=args.landmarks, crop=args.crop)
            _warn([x.input])
            if args.json:
                print(json.dumps({"overlay": args.out, "size": list(x.overlay.size),
                                  "input": x.input.to_dict(),
                                  "channels": [c.__dict__ for c in x.channels]}))
            else:
                if args.out is not None:
                    print(f"wrote {args.out} ({x.overlay.size[0]}x{x.overlay.size[1]})")
                if explainer.parts is None or "channel_evidence" not in explainer.parts:
                    print("  note: this export has no evidence table (evaluate the model, then "
                          "export again): channels are ranked by raw peak")
                if not x.channels:
                    print("  no channel fires on this image: nothing to show")
                print(f"  part labels: where each channel fires on this face (landmarks: "
                      f"{x.landmarks.source})")
                for c in x.channels:
                    print(f"  channel {c.channel:4d}  peak {c.peak:8.4f}  "
                          f"part {c.part or 'none'} (IoU {c.iou:.2f})"
                          + (f"  usually {c.table_part}" if c.table_part else "")
                          + (f"  evidence {c.evidence:.2f}" if c.evidence is not None else ""))
    except (ImageError, ModelDirError, OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
