"""python -m export NAME_OR_PATH --out DIR : thin CLI over export.onnx_export.export_model."""
import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a zoo face model to embedding.onnx, featuremap.onnx and model.ts "
                    "(ONNX metadata carries preprocessing, threshold, ECLoss params, parts), "
                    "with parity checks against PyTorch. See docs/export.md.")
    p.add_argument("model", help="registered name (e.g. vgg19-ecloss), a model folder "
                                 "(config.json + model.safetensors) or a .safetensors file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", default=None, help="weights file replacing the registered ones")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="max abs error allowed against PyTorch (default 1e-4)")
    p.add_argument("--no-flip", action="store_true",
                   help="embed without the mirror-image average (the stored threshold was "
                        "chosen with it)")
    p.add_argument("--no-featuremap", action="store_true", help="skip featuremap.onnx")
    p.add_argument("--no-torchscript", action="store_true", help="skip model.ts")
    p.add_argument("--parts", default=None,
                   help="channel -> part table JSON (default: channel_parts.json beside the "
                        "weights, when the evaluation wrote one)")
    p.add_argument("--threshold-from", default=None, metavar="VAL_SET",
                   help="val set whose verification threshold goes into the metadata "
                        "(default: the first)")
    args = p.parse_args(argv)

    from .onnx_export import DEFAULT_OPSET, DEFAULT_TOLERANCE, ExportError, export_model
    try:
        export_model(args.model, args.out, weights=args.weights,
                     opset=args.opset if args.opset is not None else DEFAULT_OPSET,
                     tolerance=(args.tolerance if args.tolerance is not None
                                else DEFAULT_TOLERANCE), flip=not args.no_flip,
                     featuremap=not args.no_featuremap, torchscript=not args.no_torchscript,
                     parts=args.parts, threshold_key=args.threshold_from)
    except (ExportError, ValueError, FileNotFoundError, TypeError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
