"""Command line for zoo.data (thin layer over the library functions).

    python -m zoo.data pack FOLDER out.rec            identity folder -> insightface RecordIO
    python -m zoo.data make-bin out.bin --orl         held-out ORL pairs -> insightface .bin
    python -m zoo.data make-bin out.bin --folder DIR  balanced pairs over an identity folder
    python -m zoo.data make-bin out.bin --lfw-pairs pairs.txt --root LFW_DIR [--ext jpg]
"""
import argparse
import sys

from .recordio import pack_folder
from .verification import make_bin_from_dataset, make_bin_from_lfw_pairs


def _user_error(e):
    """Exit with status 2 and one line naming the file and the problem (no traceback)."""
    msg = f"zoo.data: error: {e}"
    print(msg, file=sys.stderr)
    exc = SystemExit(msg)
    exc.code = 2
    return exc


def _pack(args):
    try:
        report = pack_folder(args.folder, args.out, args.idx, verify=not args.no_verify)
    except (OSError, ValueError) as e:  # a folder problem, an unreadable file: nothing written
        raise _user_error(e) from None
    for path, why in report["skipped"]:
        print(f"skipped: {why}", file=sys.stderr)
    print(f"{report['rec']}: {report['num_images']} images, {report['num_classes']} identities "
          f"(index {report['idx']}); {len(report['skipped'])} files skipped")
    return 0


def _make_bin(args):
    skipped = []
    try:
        if args.lfw_pairs:
            if not args.root:
                raise SystemExit("make-bin --lfw-pairs needs --root (the LFW image folder)")
            num_pairs = make_bin_from_lfw_pairs(args.lfw_pairs, args.root, args.out, args.ext)
        else:
            if args.orl:
                from .orl import ORLFaces
                dataset = ORLFaces("heldout", num_train=args.num_train, seed=args.seed)
            else:
                from .folders import IdentityFolder
                dataset = IdentityFolder(args.folder)
            num_pairs = make_bin_from_dataset(dataset, args.out, args.num_folds,
                                              args.pairs_per_fold, args.pair_seed,
                                              skipped=skipped)
    except (OSError, ValueError) as e:  # missing / undecodable image, bad pairs file
        raise _user_error(e) from None
    for path, why in skipped:
        print(f"skipped: {why}", file=sys.stderr)
    print(f"{args.out}: {num_pairs} pairs; {len(skipped)} undecodable images skipped")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m zoo.data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="pack FOLDER/<identity>/<image> into out.rec + out.idx")
    p.add_argument("folder")
    p.add_argument("out", help="output .rec (the .idx is written beside it)")
    p.add_argument("--idx", default=None, help="index path (default: out with .idx)")
    p.add_argument("--no-verify", action="store_true", help="do not decode images before packing")
    p.set_defaults(fn=_pack)
    b = sub.add_parser("make-bin", help="write an insightface .bin verification set")
    b.add_argument("out")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--orl", action="store_true", help="held-out ORL identities")
    src.add_argument("--folder", help="an identity folder")
    src.add_argument("--lfw-pairs", help="an LFW pairs.txt (with --root)")
    b.add_argument("--root", help="LFW image folder root/name/name_0001.jpg")
    b.add_argument("--ext", default="jpg")
    b.add_argument("--num-train", type=int, default=30)
    b.add_argument("--seed", type=int, default=0, help="ORL identity split seed")
    b.add_argument("--num-folds", type=int, default=10)
    b.add_argument("--pairs-per-fold", type=int, default=None)
    b.add_argument("--pair-seed", type=int, default=0)
    b.set_defaults(fn=_make_bin)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
