"""Torch side of the runtime's face detector: facenet-pytorch's MTCNN networks to ONNX.

    export_detector("out/detector")       # `python -m zoo.exporting` calls it for DIR/detector/
    python -m zoo.exporting.detector --out DIR

Writes pnet.onnx (input "images" (B, 3, H, W), any B, H, W >= 12 -> "regression" (B, 4, h, w),
"probabilities" (B, 2, h, w)), rnet.onnx ((B, 3, 24, 24) -> "regression" (B, 4),
"probabilities" (B, 2)), onet.onnx ((B, 3, 48, 48) -> "regression" (B, 4), "landmarks"
(B, 10), "probabilities" (B, 2)) and detector.json (provenance, the sha256 of each file, the
detection defaults). The weights are facenet_pytorch.models.mtcnn's PNet / RNet / ONet
(pretrained=True: they ship inside the facenet-pytorch wheel, nothing is downloaded). Each file
is checked (onnx.checker, parity with the torch network on onnxruntime's CPU provider at input
shapes other than the traced one, so the dynamic axes are proven) under a temporary name and
renamed into place only when all three pass. export.detector runs the cascade around them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
import torch

from export.detector import (
    DEFAULT_FACTOR,
    DEFAULT_MIN_FACE_SIZE,
    DEFAULT_THRESHOLDS,
    DETECTOR_JSON,
    INPUT_NAME,
    ONET_FILE,
    ONET_SIZE,
    OUTPUTS,
    PNET_FILE,
    RNET_FILE,
    RNET_SIZE,
    file_sha256,
)

from .onnx_writer import DEFAULT_OPSET, ExportError, write_onnx
from .parity import cpu_session

__all__ = ["export_detector", "require_facenet", "main", "PAPER", "DETECTOR_TOLERANCE"]

PAPER = ("K. Zhang, Z. Zhang, Z. Li, Y. Qiao: Joint Face Detection and Alignment using "
         "Multi-task Cascaded Convolutional Networks. IEEE Signal Processing Letters 23(10), "
         "1499-1503, 2016 (arXiv:1604.02878)")
SOURCE_URL = "https://github.com/timesler/facenet-pytorch"
LICENCE = "MIT (facenet-pytorch, its code and the converted MTCNN weights it ships)"
# The probabilities and regressions are O(1): onnxruntime agrees with torch to ~1e-6.
DETECTOR_TOLERANCE = 1e-4
# (traced input shape, parity input shapes) per network: parity runs at other batch sizes (and,
# for P-Net, other image sizes, down to its smallest input, one 12 x 12 window) than the trace.
_SHAPES: Dict[str, Tuple[tuple, List[tuple]]] = {
    PNET_FILE: ((2, 3, 37, 45), [(1, 3, 12, 12), (3, 3, 64, 51)]),
    RNET_FILE: ((2, 3, RNET_SIZE, RNET_SIZE), [(1, 3, RNET_SIZE, RNET_SIZE),
                                               (5, 3, RNET_SIZE, RNET_SIZE)]),
    ONET_FILE: ((2, 3, ONET_SIZE, ONET_SIZE), [(1, 3, ONET_SIZE, ONET_SIZE),
                                               (5, 3, ONET_SIZE, ONET_SIZE)]),
}
_DOCS = {PNET_FILE: "MTCNN P-Net (facenet-pytorch weights): proposal network, fully "
                    "convolutional over a pyramid level",
         RNET_FILE: "MTCNN R-Net (facenet-pytorch weights): refines 24 x 24 candidate crops",
         ONET_FILE: "MTCNN O-Net (facenet-pytorch weights): final box, score and 5 landmarks on "
                    "48 x 48 crops"}


def require_facenet() -> str:
    """The installed facenet-pytorch version; ExportError saying what to do when it is not."""
    try:
        return importlib_metadata.version("facenet-pytorch")
    except importlib_metadata.PackageNotFoundError:
        raise ExportError("the face detector export needs facenet-pytorch: pip install "
                          "facenet-pytorch==2.5.3 (or export without the detector: "
                          "--no-detector, detector=False)") from None


def _networks() -> Dict[str, torch.nn.Module]:
    """facenet-pytorch's three networks with the weights of its wheel (facenet_pytorch/data),
    read here with weights_only=True rather than by pretrained=True's bare torch.load."""
    import facenet_pytorch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    data = Path(facenet_pytorch.__file__).parent / "data"
    nets = {}
    for fname, cls in ((PNET_FILE, PNet), (RNET_FILE, RNet), (ONET_FILE, ONet)):
        weights = data / f"{fname[:4]}.pt"
        if not weights.is_file():
            raise ExportError(f"{weights}: missing; the facenet-pytorch wheel ships the MTCNN "
                              "weights there (reinstall facenet-pytorch==2.5.3)")
        net = cls(pretrained=False)
        net.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
        nets[fname] = net.eval()
    return nets


def _inputs(shape: tuple, seed: int) -> torch.Tensor:
    """Seeded inputs in the networks' input range ((x - 127.5) / 128 of 0..255 pixels)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def _dynamic_axes(fname: str) -> Dict[str, Dict[int, str]]:
    batch = {0: "batch"}
    if fname != PNET_FILE:
        return {INPUT_NAME: batch, **{o: batch for o in OUTPUTS[fname]}}
    # P-Net is fully convolutional: one graph for every pyramid level.
    return {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            **{o: {0: "batch", 2: "map_height", 3: "map_width"} for o in OUTPUTS[fname]}}


def _check_parity(fname: str, net: torch.nn.Module, path: Path, log) -> None:
    session = cpu_session(path)
    worst = 0.0
    shapes = _SHAPES[fname][1]
    for k, shape in enumerate(shapes):
        x = _inputs(shape, seed=k + 1)
        with torch.no_grad():
            ref = [t.numpy() for t in net(x)]
        got = session.run(list(OUTPUTS[fname]), {INPUT_NAME: x.numpy()})
        for name, r, g in zip(OUTPUTS[fname], ref, got):
            err = float(np.abs(r - g).max()) if r.shape == g.shape else float("inf")
            if not err <= DETECTOR_TOLERANCE:
                raise ExportError(f"{fname}: {name} at input {shape} differs from facenet-pytorch "
                                  f"by {err:.3g} (shapes {r.shape} vs {g.shape}; tolerance "
                                  f"{DETECTOR_TOLERANCE})")
            worst = max(worst, err)
    log(f"{fname}: max abs difference to facenet-pytorch {worst:.2g} (tolerance "
        f"{DETECTOR_TOLERANCE}) at inputs {', '.join('x'.join(map(str, s)) for s in shapes)}")


def export_detector(out_dir: Union[str, os.PathLike], opset: int = DEFAULT_OPSET,
                    log=print) -> Path:
    """Write pnet.onnx, rnet.onnx, onet.onnx and detector.json into ``out_dir`` (created) and
    return it. ExportError when a file fails its check (then nothing is written)."""
    log = log or (lambda s: None)
    version = require_facenet()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nets = _networks()
    meta = {"detector": "mtcnn", "source": f"facenet-pytorch {version}", "licence": "MIT"}
    tmp = {fname: out / f".{fname}.{os.getpid()}.tmp" for fname in nets}
    try:
        for fname, net in nets.items():
            write_onnx(net, _inputs(_SHAPES[fname][0], seed=0), tmp[fname],
                        list(OUTPUTS[fname]), opset, {**meta, "network": fname[:4]},
                        _DOCS[fname], input_name=INPUT_NAME, dynamic_axes=_dynamic_axes(fname))
            _check_parity(fname, net, tmp[fname], log)
        for fname in nets:
            os.replace(tmp[fname], out / fname)
    finally:
        for p in tmp.values():
            if p.exists():
                p.unlink()
    description = {
        "format_version": 1,
        "detector": "MTCNN (P-Net, R-Net, O-Net cascade)",
        "paper": PAPER,
        "source": {"package": "facenet-pytorch", "version": version, "url": SOURCE_URL,
                   "weights": "facenet_pytorch/data/pnet.pt, rnet.pt, onet.pt (in the wheel)"},
        "licence": LICENCE,
        "runtime": "export.detector: facenet_pytorch.models.utils.detect_face re-implemented in "
                   "numpy",
        "defaults": {"min_face_size": DEFAULT_MIN_FACE_SIZE,
                     "thresholds": list(DEFAULT_THRESHOLDS), "factor": DEFAULT_FACTOR},
        "export": {"opset": opset, "torch": torch.__version__,
                   "parity_tolerance": DETECTOR_TOLERANCE},
        "files": {fname: {"sha256": file_sha256(out / fname), "bytes": (out / fname).stat().st_size,
                          "outputs": list(OUTPUTS[fname])} for fname in nets},
    }
    (out / DETECTOR_JSON).write_text(json.dumps(description, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.exporting.detector",
                                description="Export facenet-pytorch's MTCNN (the runtime's face "
                                            "detector, export.detector) to pnet.onnx, rnet.onnx, "
                                            "onet.onnx + detector.json. See docs/export.md.")
    p.add_argument("--out", required=True, help="output folder (e.g. MODEL_DIR/detector)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET})")
    args = p.parse_args(argv)
    try:
        out = export_detector(args.out, opset=args.opset)
    except (ExportError, OSError, ValueError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {', '.join(OUTPUTS)}, {DETECTOR_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
