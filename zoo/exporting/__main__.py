"""python -m zoo.exporting NAME_OR_PATH --out DIR [--int8] : thin CLI over
zoo.exporting.model_export.export_model (int8: zoo.exporting.quantize). Exit status 0, or 1
with one line on stderr when the export fails (nothing is written then)."""
import argparse
import sys

from .int8_gate import Int8GateError
from .model_export import export_model
from .onnx_writer import DEFAULT_OPSET, ExportError
from .parity import DEFAULT_TOLERANCE
from .quantize import CALIBRATION_METHODS, DEFAULT_CALIB_FACES, DEFAULT_METHOD, Int8Options


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m zoo.exporting",
        description="Export a zoo face model to embedding.onnx, featuremap.onnx, head.onnx, "
                    "model.ts and detector/ (MTCNN for --crop) "
                    "(ONNX metadata carries preprocessing, threshold, ECLoss params, parts), "
                    "with parity checks against PyTorch. See docs/export.md.")
    p.add_argument("model", help="registered name (e.g. vgg19-ecloss), a model folder "
                                 "(config.json + model.safetensors) or a .safetensors file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", default=None, help="weights file replacing the registered ones")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="max abs error allowed against PyTorch (default 1e-4)")
    views = p.add_mutually_exclusive_group()
    views.add_argument("--flip-tta", action="store_true",
                       help="embed each face and its mirror image, averaged (flip TTA): better "
                            "verification on average, twice the work for verify and for "
                            "verify --explain (default: one view)")
    views.add_argument("--no-flip", action="store_true",
                       help="one view (the default; kept for scripts that pass it)")
    p.add_argument("--no-featuremap", action="store_true", help="skip featuremap.onnx")
    p.add_argument("--no-torchscript", action="store_true", help="skip model.ts")
    p.add_argument("--no-detector", action="store_true",
                   help="skip detector/ (the MTCNN face detector that --crop uses)")
    p.add_argument("--parts", default=None,
                   help="channel -> part table JSON (default: channel_parts.json beside the "
                        "weights, when the evaluation wrote one)")
    p.add_argument("--threshold-from", default=None, metavar="VAL_SET",
                   help="val set whose verification threshold goes into the metadata "
                        "(default: the first)")
    q = p.add_argument_group("int8 (static QDQ quantization with an accuracy gate; see "
                             "docs/export.md, 'int8')")
    q.add_argument("--int8", action="store_true",
                   help="also write embedding-int8.onnx (and featuremap-int8.onnx), each only "
                        "if it passes its gate on held-out faces")
    q.add_argument("--calib", default=None, metavar="FOLDER",
                   help="face images to calibrate on (default for ORL-trained models: faces of "
                        "the model's training identities)")
    q.add_argument("--gate", default=None, metavar="FOLDER",
                   help="identity folders FOLDER/<identity>/<image> of faces never used for "
                        "training or calibration (default for ORL-trained models: the model's "
                        "held-out identities; required otherwise)")
    q.add_argument("--calib-faces", type=int, default=DEFAULT_CALIB_FACES, metavar="N",
                   help=f"calibration faces (default {DEFAULT_CALIB_FACES}: a seeded choice)")
    q.add_argument("--calib-method", default=DEFAULT_METHOD, choices=CALIBRATION_METHODS,
                   help=f"activation range calibration (default {DEFAULT_METHOD})")
    args = p.parse_args(argv)
    int8_only = [f"--{k.replace('_', '-')}" for k in ("calib", "gate")
                 if getattr(args, k) is not None]
    if int8_only and not args.int8:
        p.error(f"{', '.join(int8_only)} only apply with --int8")

    try:
        int8 = (Int8Options(calib=args.calib, gate=args.gate, calib_faces=args.calib_faces,
                            method=args.calib_method) if args.int8 else None)
        export_model(args.model, args.out, weights=args.weights,
                     opset=args.opset if args.opset is not None else DEFAULT_OPSET,
                     tolerance=(args.tolerance if args.tolerance is not None
                                else DEFAULT_TOLERANCE), flip=args.flip_tta,
                     featuremap=not args.no_featuremap, torchscript=not args.no_torchscript,
                     detector=not args.no_detector,
                     parts=args.parts, threshold_key=args.threshold_from, int8=int8)
    except (ExportError, Int8GateError, ValueError, FileNotFoundError, TypeError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
