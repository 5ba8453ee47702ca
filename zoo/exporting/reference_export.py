"""A reference model (dlib's ResNet, zoo.reference_config) -> its exported folder: embedding.onnx
and detector/, checked like every export (docs/dlib-resnet.md, "Export").

    export_reference(zoo.load("dlib-resnet"), "out/")     # what export_model calls for it

embedding.onnx   images (B, 3, 150, 150): the aligned chip (export.face_input: detector ->
                 5 points -> export.align.chip_from_mtcnn_points5), preprocessed as the metadata
                 says (x / 255, (x - mean) / std with mean = dlib's mean / 255, std = 256 / 255:
                 dlib's (pixel - mean) / 256) -> "embeddings" (B, 128), dlib's descriptor
                 L2-normalised (no mirror average: dlib has none). Metadata: ``alignment``
                 "dlib-5point-150" and ``channel_view`` "none" (no featuremap.onnx: the network
                 was not trained with ECLoss; verify --explain gives the part evidence, the
                 intervention game on the chip).
detector/        the MTCNN detector (zoo.exporting.detector): written first, because the
                 threshold is chosen on chips it aligns.

The threshold is the mean of the 10-fold thresholds (LFW protocol, zoo.metrics.verification) on
cosine similarity, on the ORL **training** identities of the zoo's split (orl_identity_splits
(30, 0, seed 0)): all their same-person pairs and as many different-person pairs (seeded), so it
was never chosen on the held-out identities, nor on the non-ORL faces. Parity: the ONNX file
against the torch network at batch 1 and 5 (random inputs) and on the ORL chips themselves.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from export.align import chip_from_mtcnn_points5
from export.crop import largest_detected
from export.detector import DETECTOR_DIR, FaceDetector
from export.metadata import build_metadata
from export.model_dir import EMBEDDING_INT8_FILE
from export.model_files import EMBEDDING_FILE, EMBEDDING_OUTPUT, INPUT_NAME
from zoo.metrics.verification import verification_report

from .detector import export_detector, require_facenet
from .graphs import EmbeddingModel
from .onnx_writer import ExportError, write_onnx
from .parity import PARITY_BATCHES, TRACE_BATCH, check_row, cpu_session, parity_inputs
from .reference_int8 import check_reference_options, write_reference_int8

__all__ = ["THRESHOLD_SET", "export_reference", "orl_chips", "threshold_report"]

THRESHOLD_SET = "orl-train"   # the metrics key of the threshold's report
NO_CHANNEL_VIEW = ("dlib's ResNet was not trained with ECLoss; its explanation is the part "
                   "game of verify --explain")


class Preprocessed(nn.Module):
    """The runtime's preprocessed input (x / 255 - mean) / std -> the network's 0..255 RGB."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x * self.std + self.mean) * 255.0)


def orl_chips(detector: FaceDetector, identities: List[int]):
    """(chips (N, 150, 150, 3) uint8, identity per chip) of the ORL faces of ``identities``
    where the detector finds a face (the largest)."""
    from PIL import Image

    from zoo.data.orl import orl_root
    root, chips, ids = orl_root(), [], []
    for i in identities:
        for k in range(1, 11):
            img = Image.open(root / f"s{i}" / f"{k}.pgm").convert("RGB")
            faces = detector.detect(img)
            if not faces:
                continue
            face = largest_detected(faces)
            chips.append(chip_from_mtcnn_points5(img, face.points))
            ids.append(i)
    return np.stack(chips), np.asarray(ids)


def _preprocess(chips: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(chips.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


def threshold_report(emb: np.ndarray, ids: np.ndarray, seed: int = 0) -> Dict[str, Any]:
    """verification_report on all same-person pairs of ``ids`` and as many different-person
    pairs (seeded), folds by a seeded shuffle."""
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(len(ids), 1)
    same = ids[i] == ids[j]
    pos = np.flatnonzero(same)
    neg = rng.choice(np.flatnonzero(~same), size=len(pos), replace=False)
    pick = rng.permutation(np.concatenate([pos, neg]))
    scores = (emb[i[pick]] * emb[j[pick]]).sum(1).astype(np.float64)
    rep = verification_report(scores, same[pick])
    return {k: v for k, v in rep.items() if k not in ("fold_accuracies", "thresholds")}


def _write_embedding(net: nn.Module, meta: Dict[str, str], path: Path, chips: np.ndarray,
                     opset: int, tol: float, rows: List[Dict[str, Any]], log) -> None:
    cfg = net.zoo_config
    model = EmbeddingModel(Preprocessed(net, cfg["mean"], cfg["std"]), flip=False).eval()
    size = int(cfg["arch"]["input_size"])
    write_onnx(model, parity_inputs(TRACE_BATCH, size), path, [EMBEDDING_OUTPUT], opset, meta,
               f"{cfg['name']}: aligned 150 x 150 chips -> L2-normalised dlib descriptors")
    sess = cpu_session(path)
    checks = [(f"random batch {b}", parity_inputs(b, size)) for b in PARITY_BATCHES]
    checks.append((f"{min(len(chips), 32)} ORL chips",
                   _preprocess(chips[:32], cfg["mean"], cfg["std"])))
    for what, x in checks:
        with torch.no_grad():   # the network itself on 0..255 pixels, then normalised
            ref = net((x * model.net.std + model.net.mean) * 255.0)
            ref = torch.nn.functional.normalize(ref, dim=1).numpy()
        got = sess.run(None, {INPUT_NAME: x.numpy()})[0]
        check_row(rows, {"file": EMBEDDING_FILE, "output": EMBEDDING_OUTPUT, "batch": len(x),
                         "inputs": what, "max_abs_err": float(np.abs(ref - got).max()),
                         "tol": tol}, tol, log)


def export_reference(net: nn.Module, out_dir, *, opset: int, tolerance: float,
                     detector: bool = True, int8: Optional[Any] = None,
                     log: Callable[[str], None] = print):
    """Export a reference model loaded by zoo.load into ``out_dir`` (see the module
    docstring); returns model_export.ExportResult's fields as a dict."""
    from zoo.data.orl import orl_identity_splits
    name = net.zoo_config["name"]
    if not detector:
        raise ExportError(f"{name} needs detector/: its input is the aligned chip the runtime "
                          "cuts with the detector's 5 points (drop --no-detector)")
    if int8 is not None:
        check_reference_options(name, int8)
    require_facenet()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    det_tmp = out / f".{DETECTOR_DIR}.{os.getpid()}.tmp"
    emb_tmp = out / f".{EMBEDDING_FILE}.{os.getpid()}.tmp"
    int8_tmp = out / f".{EMBEDDING_INT8_FILE}.{os.getpid()}.tmp"
    rows: List[Dict[str, Any]] = []
    quantization: Dict[str, Dict[str, Any]] = {}
    try:
        export_detector(det_tmp, opset=opset, log=log)
        train, _, held = orl_identity_splits(30, 0, 0)
        detector = FaceDetector(det_tmp)
        chips, ids = orl_chips(detector, train)
        cfg = net.zoo_config
        with torch.no_grad():
            emb = torch.nn.functional.normalize(net(torch.from_numpy(chips).permute(
                0, 3, 1, 2).float()), dim=1).numpy()
        rep = threshold_report(emb, ids)
        rep["identities"] = [f"s{i}" for i in train]
        rep["faces"] = int(len(ids))
        log(f"threshold {rep['threshold']:.4f} on ORL training identities ({len(ids)} faces, "
            f"{rep['num_pairs']} pairs): 10-fold accuracy {rep['accuracy']:.4f}, AUC "
            f"{rep['auc']:.4f}")
        cfg = dict(cfg, metrics={THRESHOLD_SET: rep})
        meta = build_metadata(cfg, flip=False, parts=None)
        meta.update(channel_view="none", channel_view_note=NO_CHANNEL_VIEW)
        _write_embedding(net, meta, emb_tmp, chips, opset, tolerance, rows, log)
        if int8 is not None:   # gated on the held-out identities' chips, before any rename
            gate_chips, gate_ids = orl_chips(detector, held)
            quantization[EMBEDDING_INT8_FILE] = write_reference_int8(
                emb_tmp, int8_tmp, meta, _preprocess(chips, cfg["mean"], cfg["std"]).numpy(),
                _preprocess(gate_chips, cfg["mean"], cfg["std"]).numpy(), gate_ids, int8, log)
            os.replace(int8_tmp, out / EMBEDDING_INT8_FILE)
        os.replace(emb_tmp, out / EMBEDDING_FILE)
        shutil.rmtree(out / DETECTOR_DIR, ignore_errors=True)
        os.replace(det_tmp, out / DETECTOR_DIR)
    finally:
        for tmp in (emb_tmp, int8_tmp):
            tmp.unlink(missing_ok=True)
        shutil.rmtree(det_tmp, ignore_errors=True)
    files = {EMBEDDING_FILE: out / EMBEDDING_FILE, DETECTOR_DIR: out / DETECTOR_DIR}
    if quantization:
        files[EMBEDDING_INT8_FILE] = out / EMBEDDING_INT8_FILE
    log(f"wrote {', '.join(str(f) for f in files.values())}")
    return {"out_dir": out, "files": files, "parity": rows, "metadata": meta,
            "quantization": quantization}
