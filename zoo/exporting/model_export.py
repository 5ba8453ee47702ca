"""A zoo model -> its exported folder: embedding.onnx, featuremap.onnx, head.onnx, model.ts,
detector/ (+ int8 files), every file checked before any is renamed into place.

    export_model("vgg19-ecloss", "out/")        # what `python -m zoo.exporting` calls

embedding.onnx   images (B,3,S,S) float32, preprocessed as the metadata says -> "embeddings"
                 (B,D), L2-normalised.
                 By default one view: normalise(f(x)), the protocol of the stored threshold's
                 ``one_view`` report. flip=True (flip TTA) embeds normalise(f(x) + f(mirror x)),
                 exactly zoo.metrics.verification.embed(flip=True), with the flip-TTA threshold:
                 better verification on average (docs/performance.md, "flip vs --no-flip") at
                 twice the network's work, which an explained match (a game of 74 coalitions)
                 pays 146 times; a threshold is only meaningful with its protocol.
featuremap.onnx  images -> "feature_maps" (B,C,n,n): the ECLoss target layer (post-ReLU),
                 "masks" (B,C,S,S) bool: the top-10% regions of the maps bilinearly upsampled to
                 the input size (paper Eq. 8-9, as zoo.metrics.explainability.top10_activation),
                 and "heatmaps" (B,C,S,S): the upsampled maps inside the masks, 0 elsewhere.
model.ts         TorchScript (traced) of the same embedding model as embedding.onnx.
head.onnx        "feature_maps" (B,C,n,n) -> "channel_terms" (B,C,D) and "head_bias" (B,D): the
                 embedding head after the target layer (max-pool -> linear -> BatchNorm1d, affine
                 at inference) split by channel; per view, channel_terms.sum(1) + head_bias is
                 the un-normalised embedding. Written with featuremap.onnx; what per-part
                 evidence (export.channel_evidence) needs.
detector/        pnet.onnx, rnet.onnx, onet.onnx, detector.json: facenet-pytorch's MTCNN for the
                 runtime's face detection (zoo.exporting.detector writes it, export.detector
                 runs it; --crop reads it).

Every file is written under a temporary name, checked (onnx.checker full check, parity against
PyTorch at batch 1 and 5 on onnxruntime's CPU provider) and only then renamed into place: a
failed export leaves no file that looks valid. The metadata written into every file is built by
export.metadata.build_metadata; the traced modules are zoo.exporting.graphs', the checks
zoo.exporting.parity's.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

import zoo
from export.channel_table import TOP_FRACTION, read_parts_file
from export.detector import DETECTOR_DIR
from export.metadata import build_metadata
from export.model_dir import CHANNEL_TERMS_OUTPUT, HEAD_BIAS_OUTPUT, HEAD_FILE, model_file
from export.model_files import (
    EMBEDDING_FILE,
    EMBEDDING_OUTPUT,
    FEATURE_OUTPUT,
    FEATUREMAP_FILE,
    HEATMAP_OUTPUT,
    INPUT_NAME,
    MASK_OUTPUT,
    PARTS_FILE,
    TORCHSCRIPT_FILE,
)
from zoo.hub import WEIGHTS_SHA256, check_same_weights, model_weights_sha256
from zoo.metrics import explainability
from zoo.metrics.verification import embed as zoo_embed
from zoo.reference_config import config_family

from .detector import export_detector, require_facenet
from .graphs import EmbeddingModel, FeatureMapModel, HeadModel
from .head_baseline import reference_mean
from .onnx_writer import DEFAULT_OPSET, ExportError, QuietExport, write_onnx
from .parity import (
    DEFAULT_TOLERANCE,
    PARITY_BATCHES,
    TRACE_BATCH,
    check_row,
    cpu_session,
    mask_error,
    parity_inputs,
)
from .quantize import plan_int8
from .reference_export import export_reference

__all__ = ["ExportResult", "export_model"]


@dataclass
class ExportResult:
    out_dir: Path
    files: Dict[str, Path]
    parity: List[Dict[str, Any]] = field(default_factory=list)
    metadata: Dict[str, str] = field(default_factory=dict)
    quantization: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # int8 gate per file


# ----------------------------------------------------------------------------------------------
# the channel -> part table to embed
# ----------------------------------------------------------------------------------------------

def _find_parts(net: nn.Module) -> Optional[Path]:
    """channel_parts.json beside the model's weights: in ``net.zoo_dir``, the local folder
    zoo.load read the model from (None for remote or paper configs), when evaluation wrote one."""
    zoo_dir = getattr(net, "zoo_dir", None)
    if zoo_dir is None:
        return None
    candidate = Path(zoo_dir) / PARTS_FILE
    return candidate if candidate.is_file() else None


def _parts_table(net: nn.Module, parts: Optional[Union[str, os.PathLike]],
                 log: Callable[[str], None]) -> Optional[Dict[str, Any]]:
    """The channel -> part table to embed: ``parts`` when given, else the one beside the
    weights (_find_parts), else None."""
    parts_path = Path(parts) if parts is not None else _find_parts(net)
    if parts_path is None:
        return None
    if not parts_path.is_file():
        raise FileNotFoundError(f"{parts_path}: channel-part table not found")
    table = read_parts_file(parts_path, int(net.feature_channels))
    name = net.zoo_config["name"]
    check_same_weights(str(parts_path), table.get(WEIGHTS_SHA256), model_weights_sha256(net),
                       f"`python -m zoo.evaluate {name}` (it rewrites the table), then export "
                       "again")
    if WEIGHTS_SHA256 not in table:
        log(f"note: {parts_path} records no weights hash (written before hashes were "
            "recorded): nothing checks that it belongs to these weights")
    log(f"channel -> part table: {parts_path}")
    return table


@dataclass
class _Export:
    """What every artifact writer needs: the loaded model, its metadata and the check settings;
    ``rows`` collects the parity rows of all artifacts."""
    net: nn.Module
    meta: Dict[str, str]
    flip: bool
    opset: int
    tolerance: float
    log: Callable[[str], None]
    rows: List[Dict[str, Any]] = field(default_factory=list)
    reference: Any = "orl"  # head.onnx's baseline faces (head_baseline.reference_faces)
    tmp: Dict[str, Path] = field(default_factory=dict)  # file -> its temporary path (int8 reads)

    @property
    def name(self) -> str:
        return str(self.net.zoo_config["name"])

    @property
    def size(self) -> int:
        return int(self.net.input_size)

    def example(self) -> torch.Tensor:
        """The tracing input: a batch size the parity checks do not use."""
        return parity_inputs(TRACE_BATCH, self.size)


def _check_embeddings(job: _Export, fname: str,
                      run: Callable[[torch.Tensor], np.ndarray]) -> None:
    """Parity of an exported embedding model (``run``: input -> embeddings) at PARITY_BATCHES."""
    for b in PARITY_BATCHES:
        x = parity_inputs(b, job.size)
        # the reference is the evaluation code itself, not the wrapper
        ref = zoo_embed(job.net, x, flip=job.flip).numpy()
        got = run(x)
        check_row(job.rows, {"file": fname, "output": EMBEDDING_OUTPUT, "batch": b,
                             "max_abs_err": float(np.abs(ref - got).max()),
                             "tol": job.tolerance}, job.tolerance, job.log)


def _export_embedding(job: _Export, path: Path) -> None:
    """embedding.onnx at ``path``: onnx.checker, then parity against zoo's embed."""
    write_onnx(EmbeddingModel(job.net, flip=job.flip).eval(), job.example(), path,
               [EMBEDDING_OUTPUT], job.opset, job.meta,
               f"{job.name}: images -> L2-normalised embeddings")
    sess = cpu_session(path)
    _check_embeddings(job, EMBEDDING_FILE,
                      lambda x: sess.run(None, {INPUT_NAME: x.numpy()})[0])


def _export_featuremap(job: _Export, path: Path) -> None:
    """featuremap.onnx at ``path``: onnx.checker, then parity of the maps against the network's
    forward_features and of heatmaps/masks against the evaluation's top10_activation."""
    outputs = [FEATURE_OUTPUT, HEATMAP_OUTPUT, MASK_OUTPUT]
    write_onnx(FeatureMapModel(job.net).eval(), job.example(), path, outputs, job.opset,
               job.meta, f"{job.name}: images -> target-layer maps and top-"
                         f"{TOP_FRACTION:.0%} heatmaps at input size")
    sess = cpu_session(path)
    tol = job.tolerance
    for b in PARITY_BATCHES:
        x = parity_inputs(b, job.size)
        with torch.no_grad():
            ref_f = job.net.forward_features(x).numpy()
        got_f, got_h, got_m = sess.run(outputs, {INPUT_NAME: x.numpy()})
        # maps are not normalised: the tolerance is relative to their scale
        scale = max(1.0, float(np.abs(ref_f).max()))
        check_row(job.rows, {"file": FEATUREMAP_FILE, "output": FEATURE_OUTPUT, "batch": b,
                             "max_abs_err": float(np.abs(ref_f - got_f).max()),
                             "tol": tol * scale}, tol, job.log)
        check_row(job.rows, {"file": FEATUREMAP_FILE,
                             "output": f"{HEATMAP_OUTPUT}+{MASK_OUTPUT}", "batch": b,
                             **mask_error(ref_f, got_h, got_m, job.size, tol * scale),
                             "tol": tol * scale}, tol, job.log)


def _export_head(job: _Export, path: Path) -> None:
    """head.onnx at ``path`` (terms measured from the reference faces' mean, reference_mean):
    onnx.checker, then parity at PARITY_BATCHES on random non-negative maps (the maps of random
    images can be all zero for a model trained with the content-free term, which would check
    nothing): terms.sum(1) + bias against the network's forward_head, and (batch 1) every
    channel's term against forward_head(reference maps with that channel replaced) -
    forward_head(reference maps), the head's linearity checked through PyTorch's modules."""
    outputs = [CHANNEL_TERMS_OUTPUT, HEAD_BIAS_OUTPUT]
    c, n = int(job.net.feature_channels), int(job.net.feature_size)

    def maps(batch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(4321 + batch)
        return torch.rand(batch, c, n, n, generator=g) * 2   # post-ReLU scale ~1

    reference, baseline = reference_mean(job.net, job.reference, job.flip, job.log)
    model = HeadModel(job.net, reference).eval()
    # maps whose max-pool is the reference exactly: each pooled value on its 2 x 2 block
    p = int(round(model.reference.shape[1] ** 0.5))
    ref_maps = torch.zeros(1, c, n, n)
    ref_maps[0, :, :2 * p, :2 * p] = model.reference.reshape(c, p, p).repeat_interleave(
        2, 1).repeat_interleave(2, 2)
    write_onnx(model, maps(TRACE_BATCH), path, outputs, job.opset,
               dict(job.meta, evidence_baseline=baseline),
               f"{job.name}: target maps -> per-channel embedding terms and bias",
               input_name=FEATURE_OUTPUT)
    sess = cpu_session(path)
    for b in PARITY_BATCHES:
        fmap = maps(b)
        with torch.no_grad():
            ref = job.net.forward_head(fmap).double().numpy()
        terms, bias = sess.run(outputs, {FEATURE_OUTPUT: fmap.numpy()})
        got = terms.astype(np.float64).sum(1) + bias
        scale = max(1.0, float(np.abs(ref).max()))
        check_row(job.rows, {"file": HEAD_FILE, "output": f"{CHANNEL_TERMS_OUTPUT}+bias",
                             "batch": b, "max_abs_err": float(np.abs(ref - got).max()),
                             "tol": job.tolerance * scale}, job.tolerance, job.log)
        if b != 1:
            continue
        swapped = ref_maps.repeat(c, 1, 1, 1)                          # (C, C, n, n)
        swapped[torch.arange(c), torch.arange(c)] = fmap[0]
        with torch.no_grad():
            base = job.net.forward_head(ref_maps).double()
            per = (job.net.forward_head(swapped).double() - base).numpy()  # (C, D)
        err = max(float(np.abs(per - terms[0]).max()),
                  float(np.abs(base[0].numpy() - bias[0]).max()))
        check_row(job.rows, {"file": HEAD_FILE, "output": f"{CHANNEL_TERMS_OUTPUT} per channel",
                             "batch": b, "max_abs_err": err, "tol": job.tolerance * scale},
                  job.tolerance, job.log)


def _export_torchscript(job: _Export, path: Path) -> None:
    """model.ts at ``path`` (traced embedding model, metadata.json as an extra file), then
    parity of the reloaded file against zoo's embed."""
    with QuietExport(), torch.no_grad():
        traced = torch.jit.trace(EmbeddingModel(job.net, flip=job.flip).eval(),
                                 (job.example(),), check_trace=False)
        traced.save(str(path), _extra_files={"metadata.json": json.dumps(job.meta)})
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    _check_embeddings(job, TORCHSCRIPT_FILE, run)


def _check_top_fraction() -> None:
    if explainability.TOP_FRACTION != TOP_FRACTION:  # the masks must be the evaluation's
        raise ExportError(f"export's top fraction {TOP_FRACTION} differs from "
                          f"zoo.metrics.explainability.TOP_FRACTION "
                          f"{explainability.TOP_FRACTION}; update export/channel_table.py")


def export_model(name_or_path: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
                 weights: Optional[Union[str, os.PathLike]] = None, opset: int = DEFAULT_OPSET,
                 tolerance: float = DEFAULT_TOLERANCE, flip: bool = False,
                 featuremap: bool = True, torchscript: bool = True,
                 parts: Optional[Union[str, os.PathLike]] = None,
                 threshold_key: Optional[str] = None, int8: Optional[Any] = None,
                 reference: Optional[Union[str, os.PathLike]] = "orl",
                 detector: bool = True,
                 log: Optional[Callable[[str], None]] = print) -> ExportResult:
    """Export a zoo model (registered name, model folder or .safetensors file; ``weights``
    as in zoo.load) into ``out_dir``. Raises ExportError when a check fails (nothing written).

    parts: a channel -> part table (JSON) to embed; default: channel_parts.json beside the
    model's weights when the evaluation step wrote one. threshold_key: which val set's threshold
    goes into the metadata (default: the first one the model was evaluated on).
    reference: the faces whose mean target activity head.onnx's channel terms are measured from
    (per-part evidence): "orl" (the ORL training identities; a zero baseline when the ORL faces
    are not installed), a folder of identity sub-folders, or None (zero baseline).
    int8: a zoo.exporting.quantize.Int8Options: also write embedding-int8.onnx (and
    featuremap-int8.onnx with the featuremap), each only if it passes its accuracy gate
    (zoo.exporting.quantize; a failed gate raises Int8GateError and nothing is written).
    detector: also write the runtime's face detector (facenet-pytorch's MTCNN as ONNX,
    zoo.exporting.detector) into ``out_dir/detector/``, which `--crop` and the part locator use.

    Each artifact is written to a temporary name by its own writer, which also runs its checks;
    only when all pass are they renamed into place. On any failure the temporary files go.
    """
    log = log or (lambda s: None)
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    _check_top_fraction()
    if detector:  # fail before the model work when facenet-pytorch is missing
        require_facenet()
    net = zoo.load(name_or_path, weights=weights)
    net.eval()
    if config_family(net.zoo_config) != "vgg":  # dlib's ResNet: zoo.exporting.reference_export
        return ExportResult(**export_reference(net, out_dir, opset=opset, tolerance=tolerance,
                                               detector=detector, int8=int8, log=log))
    table = _parts_table(net, parts, log)
    meta = build_metadata(net.zoo_config, flip=flip, parts=table, threshold_key=threshold_key)
    sha = model_weights_sha256(net)
    if sha is not None:  # the runtime refuses an embedded table of other weights
        meta[WEIGHTS_SHA256] = sha
    if "threshold" not in meta:
        log("note: the model has no evaluation metrics, so the export carries no verification "
            "threshold (runtime users must pass one)")
    int8_plan = None
    if int8 is not None:  # calibration and gate faces are checked before anything is exported
        int8_plan = plan_int8(net.zoo_config, meta, int8, log)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = _Export(net=net, meta=meta, flip=flip, opset=opset, tolerance=tolerance, log=log,
                  reference=reference)
    plan: List[Tuple[str, Callable[[_Export, Path], None]]] = [(EMBEDDING_FILE, _export_embedding)]
    if featuremap:
        plan.append((FEATUREMAP_FILE, _export_featuremap))
        plan.append((HEAD_FILE, _export_head))
    if torchscript:
        plan.append((TORCHSCRIPT_FILE, _export_torchscript))
    if int8_plan is not None:  # quantizes the float file written earlier in this plan
        for src in [EMBEDDING_FILE] + ([FEATUREMAP_FILE] if featuremap else []):
            plan.append((model_file(src, "int8"),
                         lambda job, path, src=src: int8_plan.write(src, job.tmp[src], path)))
    tmp = job.tmp = {fname: out / f".{fname}.{os.getpid()}.tmp" for fname, _ in plan}
    detector_tmp = out / f".{DETECTOR_DIR}.{os.getpid()}.tmp"
    try:
        for fname, write in plan:
            write(job, tmp[fname])
        if detector:  # last: it does not depend on the model, so a failed model check skips it
            export_detector(detector_tmp, opset=opset, log=log)
        files = {}
        for fname, _ in plan:
            os.replace(tmp[fname], out / fname)
            files[fname] = out / fname
        if detector:
            shutil.rmtree(out / DETECTOR_DIR, ignore_errors=True)  # a folder is not replaced
            os.replace(detector_tmp, out / DETECTOR_DIR)
    finally:
        for p in tmp.values():
            if p.exists():
                p.unlink()
        shutil.rmtree(detector_tmp, ignore_errors=True)
    for fname, p in files.items():
        log(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")
    if detector:
        files[DETECTOR_DIR] = out / DETECTOR_DIR
        log(f"wrote {out / DETECTOR_DIR}/ (the face detector for --crop)")
    return ExportResult(out_dir=out, files=files, parity=job.rows, metadata=meta,
                        quantization=int8_plan.reports if int8_plan is not None else {})
