"""``ecloss``: the runtime's one console command (onnxruntime + numpy + Pillow only).

    ecloss verify A.jpg B.jpg --model out/            # = python -m export.runtime verify
    ecloss explain A.jpg --model out/ --out heat.png  # = python -m export.runtime explain
    ecloss embed faces/ --model out/ --out faces.npz  # a folder / list file / images -> .npz
    ecloss verify-pairs pairs.txt --model out/ [--root lfw/] [--json]
    ecloss search probe.jpg --model out/ --gallery people/ [--top-k 5] [--json]

Installed by ``pip install ".[runtime]"`` (setup.py's console_scripts); ``python -m export.cli``
is the same. Exit status 0, or 2 with one line on stderr for a bad input or model folder.
"""
from __future__ import annotations

import argparse
import json
import sys

from .batch import embed_images, gallery, save_embeddings, search
from .images import ImageError
from .model_dir import PRECISIONS, ModelDirError
from .pairs import read_pairs, verify_pairs
from .runtime import main as runtime_main
from .verifier import FaceVerifier

__all__ = ["main", "build_parser"]

DELEGATED = ("verify", "explain")   # export.runtime's own commands


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecloss", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in DELEGATED:
        sub.add_parser(name, add_help=False, help=f"python -m export.runtime {name} (its "
                                                  "options: ecloss " + name + " --help)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True, help="folder of `python -m zoo.exporting`")
    common.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    common.add_argument("--precision", default="float", choices=PRECISIONS)
    crop = common.add_mutually_exclusive_group()
    crop.add_argument("--crop", dest="crop", action="store_const", const="always",
                      default="auto", help="always crop the largest face (default: detect, "
                                           "and use a photo that is a face crop as it is)")
    crop.add_argument("--no-crop", dest="crop", action="store_const", const="never",
                      help="use the images as given (face crops); no detection")
    common.add_argument("--no-progress", action="store_false", dest="progress",
                        help="no progress line on stderr")
    e = sub.add_parser("embed", parents=[common], help="images -> a .npz of embeddings")
    e.add_argument("inputs", nargs="+", help="folders, list files (.txt) or images")
    e.add_argument("--out", required=True, help="the .npz file to write")
    v = sub.add_parser("verify-pairs", parents=[common], help="every pair of a pairs file")
    v.add_argument("pairs", help="LFW pairs.txt, or lines 'A B [label]'")
    v.add_argument("--root", default=None, help="where the images are (default: the pairs "
                                                "file's folder)")
    v.add_argument("--ext", default=".jpg", help="LFW layout: the images' extension")
    v.add_argument("--threshold", type=float, default=None)
    v.add_argument("--json", action="store_true", help="print the whole report as JSON")
    s = sub.add_parser("search", parents=[common], help="nearest gallery identities of probes")
    s.add_argument("probes", nargs="+", help="probe images (or folders / list files)")
    s.add_argument("--gallery", required=True,
                   help="a folder of identity sub-folders, or a .npz of `ecloss embed`")
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--threshold", type=float, default=None,
                   help="leave out matches below this cosine (default: none)")
    s.add_argument("--json", action="store_true")
    return p


def _skipped(skipped: dict, what: str) -> None:
    if skipped:
        print(f"note: skipped {len(skipped)} {what}:", file=sys.stderr)
        for path, why in skipped.items():
            print(f"  {path}: {why}", file=sys.stderr)


def _embed(args, verifier) -> None:
    emb = embed_images(verifier, args.inputs, crop=args.crop, progress=args.progress)
    _skipped(emb.skipped, "undecodable or refused images")
    if not len(emb):
        raise ValueError(f"{', '.join(args.inputs)}: no image could be embedded")
    path = save_embeddings(args.out, emb)
    print(f"wrote {path}: {len(emb)} embeddings of dimension {emb.vectors.shape[1]} "
          f"({emb.model_name}, export {emb.export_id})")


def _verify_pairs(args, verifier) -> None:
    pairs = read_pairs(args.pairs, root=args.root, ext=args.ext)
    rep = verify_pairs(verifier, pairs, threshold=args.threshold, crop=args.crop,
                       progress=args.progress)
    _skipped({f"{s['a']} / {s['b']}": s["reason"] for s in rep["skipped"]}, "pairs")
    if args.json:
        print(json.dumps(rep))
        return
    for r in rep["pairs"]:
        label = f"  label {'same' if r['label'] else 'different'}" if "label" in r else ""
        print(f"{r['similarity']:.4f}  {'same' if r['same'] else 'different':9s}{label}  "
              f"{r['a']}  {r['b']}")
    summary = f"{rep['num_pairs']} pairs, threshold {rep['threshold']:.4f}"
    if "accuracy" in rep:
        auc = "n/a (one kind of pair)" if rep["auc"] is None else f"{rep['auc']:.4f}"
        summary += (f"; {rep['num_labelled']} labelled: accuracy {rep['accuracy']:.4f}, "
                    f"ROC AUC {auc}")
    print(summary)


def _search(args, verifier) -> None:
    g = gallery(verifier, args.gallery, crop=args.crop, progress=args.progress)
    _skipped(g.skipped, "gallery images")
    probes = embed_images(verifier, args.probes, crop=args.crop)
    _skipped(probes.skipped, "probes")
    hits = search(g, probes, top_k=args.top_k, threshold=args.threshold)
    if args.json:
        print(json.dumps(hits))
        return
    for h in hits:
        print(h["probe"])
        if not h["matches"]:
            print("  no identity above the threshold")
        for m in h["matches"]:
            print(f"  {m['similarity']:.4f}  {m['identity']}  ({m['path']})")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return runtime_main(argv)
    args = build_parser().parse_args(argv)
    try:
        verifier = FaceVerifier(args.model, threshold=getattr(args, "threshold", None)
                                if args.cmd == "verify-pairs" else None, device=args.device,
                                precision=args.precision)
        {"embed": _embed, "verify-pairs": _verify_pairs, "search": _search}[args.cmd](
            args, verifier)
    except (ImageError, ModelDirError, OSError, ValueError, RuntimeError) as exc:
        print(f"ecloss {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
