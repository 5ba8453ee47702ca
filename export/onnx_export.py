"""Torch side of the export: zoo model -> embedding.onnx, featuremap.onnx, model.ts (+ checks).

    export_model("vgg19-ecloss", "out/")        # what `python -m export` calls

embedding.onnx   images (B,3,S,S) float32, preprocessed as the metadata says -> "embeddings"
                 (B,D), L2-normalised.
                 With flip=True (default) the embedding is normalise(f(x) + f(mirror x)), exactly
                 zoo.metrics.verification.embed(flip=True), the protocol the stored verification
                 threshold was chosen with; a threshold is only meaningful with that protocol.
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
                 runtime's face detection (export.detector_onnx writes it, export.detector runs
                 it; --crop reads it).

Every file is written under a temporary name, checked (onnx.checker full check, parity against
PyTorch at batch 1 and 5 on onnxruntime's CPU provider) and only then renamed into place: a
failed export leaves no file that looks valid. The metadata written into every file is built by
export.metadata (build_metadata, re-exported here).
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .channel_table import TOP_FRACTION, read_parts_file, top_k_pixels
from .detector import DETECTOR_DIR
from .metadata import build_metadata
from .model_dir import CHANNEL_TERMS_OUTPUT, HEAD_BIAS_OUTPUT, HEAD_FILE, model_file
from .model_files import (
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

__all__ = ["ExportError", "ExportResult", "EmbeddingModel", "FeatureMapModel", "HeadModel",
           "export_model", "build_metadata", "DEFAULT_OPSET", "DEFAULT_TOLERANCE",
           "PARITY_BATCHES"]

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 5)
_TRACE_BATCH = 2  # traced at a batch size the parity check does not use: proves the dynamic axis
REFERENCE_FACES = 100  # faces averaged for head.onnx's baseline (a mean: 100 are plenty)


class ExportError(RuntimeError):
    """The export produced a model that fails a check (parity, ONNX checker)."""


class EmbeddingModel(nn.Module):
    """images -> L2-normalised embeddings; flip=True adds the mirror image's embedding first."""

    def __init__(self, net: nn.Module, flip: bool = True):
        super().__init__()
        self.net = net
        self.flip = bool(flip)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.flip:
            # One pass over [x; mirror x] instead of two graphs: same maths, one batch.
            e = self.net(torch.cat([images, torch.flip(images, dims=[3])], 0))
            e = e.reshape(2, -1, e.shape[-1]).sum(0)
        else:
            e = self.net(images)
        return F.normalize(e, p=2.0, dim=1)


class FeatureMapModel(nn.Module):
    """images -> target maps (B,C,n,n), top-fraction heatmaps (B,C,S,S) and their masks.

    The masks are zoo.metrics.explainability.top10_activation (paper Eq. 8-9) for a batch:
    bilinear upsampling (align_corners=False) to the input size, then per channel the pixels at
    or above the k-th largest value, k = round(10% of S*S), never a pixel at the map's minimum
    (a sparse map keeps only its active pixels; a constant map keeps nothing).
    heatmaps = the upsampled map where the mask is on, 0 elsewhere."""

    def __init__(self, net: nn.Module, fraction: float = TOP_FRACTION):
        super().__init__()
        self.net = net
        self.size = int(net.input_size)
        self.k = top_k_pixels(self.size, fraction)

    def forward(self, images: torch.Tensor):
        fmap = self.net.forward_features(images)
        up = F.interpolate(fmap, size=(self.size, self.size), mode="bilinear",
                           align_corners=False)
        flat = up.flatten(2)
        thr = flat.topk(self.k, dim=2).values[..., -1:]
        keep = (flat >= thr) & (flat > flat.amin(2, keepdim=True))
        heat = torch.where(keep, flat, torch.zeros_like(flat)).reshape(up.shape)
        return fmap, heat, keep.reshape(up.shape)


class HeadModel(nn.Module):
    """target maps (B,C,n,n) -> the embedding head's per-channel terms (B,C,D) and bias (B,D).

    At inference the head (max-pool, flatten, dropout = identity, linear, BatchNorm1d with its
    running statistics) is affine in the pooled maps z: head(z) = W z + b, W and b folded in
    float64. Channel c's term is W[:, block c] (z_c - r_c) and the bias is b + W r, where r
    (``reference``, (C, P) pooled maps, default 0) is the baseline the terms are measured from:
    whatever r, terms.sum(1) + bias == forward_head(maps).
    """

    def __init__(self, net: nn.Module, reference: Optional[torch.Tensor] = None):
        super().__init__()
        lin, bn = getattr(net, "embedding", None), getattr(net, "embedding_bn", None)
        pool = getattr(net, "pool", None)
        if not (isinstance(lin, nn.Linear) and isinstance(pool, nn.MaxPool2d)
                and isinstance(bn, (nn.BatchNorm1d, nn.Identity))):
            raise ExportError(f"{HEAD_FILE}: per-part evidence needs the zoo's embedding head "
                              f"(max-pool -> linear -> BatchNorm1d); {type(net).__name__} has "
                              "another")
        w = lin.weight.detach().double()
        b = (lin.bias.detach().double() if lin.bias is not None
             else torch.zeros(w.shape[0], dtype=torch.float64))
        if isinstance(bn, nn.BatchNorm1d):
            if bn.running_mean is None:
                raise ExportError(f"{HEAD_FILE}: the embedding BatchNorm1d keeps no running "
                                  "statistics, so the head is not affine at inference")
            scale = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
            shift = -bn.running_mean.detach().double() * scale
            if bn.affine:
                scale, shift = (scale * bn.weight.detach().double(),
                                shift * bn.weight.detach().double() + bn.bias.detach().double())
            w, b = scale[:, None] * w, scale * b + shift
        channels = int(net.feature_channels)
        w = w.reshape(w.shape[0], channels, -1)                          # (D, C, P)
        ref = torch.zeros(w.shape[1:], dtype=torch.float64)
        if reference is not None:
            ref = reference.detach().double().reshape(ref.shape)
            b = b + torch.einsum("dcp,cp->d", w, ref)
        self.pool = pool
        self.register_buffer("weight", w.float())
        self.register_buffer("reference", ref.float())
        self.register_buffer("bias", b.float())

    def forward(self, fmap: torch.Tensor):
        z = torch.flatten(self.pool(fmap), 2) - self.reference           # (B, C, P)
        terms = torch.einsum("bcp,dcp->bcd", z, self.weight)
        return terms, self.bias.expand(fmap.shape[0], -1)


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
    log(f"channel -> part table: {parts_path}")
    return table


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------

def _parity_inputs(batch: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234 + batch)
    # Preprocessed images lie in [-1, 1] for mean = std = 0.5.
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


def _ort_session(path: Path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _mask_error(fmap: np.ndarray, got_heat: np.ndarray, got_mask: np.ndarray, size: int,
                tol: float) -> Dict[str, float]:
    """Heatmaps/masks against the evaluation's own top10_activation on the reference maps.

    Masks are thresholded, so a pixel equal to its channel's threshold to within float rounding
    may be kept by one backend and not the other: such flips are allowed only for pixels within
    ``tol`` of the threshold; everywhere else masks must agree and heatmap values match."""
    from zoo.metrics.explainability import top10_activation, upsample_maps
    ref_up = np.stack([upsample_maps(f, size).numpy() for f in fmap])
    ref_mask = np.stack([top10_activation(f, size) for f in fmap])
    ref_heat = np.where(ref_mask, ref_up, 0)
    both = ref_mask & got_mask
    err = float(np.abs(ref_heat[both] - got_heat[both]).max()) if both.any() else 0.0
    err = max(err, float(np.abs(got_heat[~got_mask]).max(initial=0.0)))
    flips = ref_mask != got_mask
    gap = 0.0
    if flips.any():
        flat = ref_up.reshape(*ref_up.shape[:2], -1)
        k = top_k_pixels(size)
        thr = -np.sort(-flat, axis=-1)[..., k - 1]
        gap = float(np.abs(ref_up - thr[..., None, None])[flips].max())
    return {"max_abs_err": err, "flipped_pixels": int(flips.sum()), "flip_gap": gap}


def _check(rows: List[Dict[str, Any]], row: Dict[str, Any], tol: float, log: Callable) -> None:
    rows.append(row)
    msg = (f"parity {row['file']} [{row['output']}] batch {row['batch']}: max abs err "
           f"{row['max_abs_err']:.3g} (tol {row['tol']:.3g})")
    if "flipped_pixels" in row:
        msg += f", {row['flipped_pixels']} threshold-boundary pixels (gap {row['flip_gap']:.3g})"
    log(msg)
    if row["max_abs_err"] > row["tol"] or row.get("flip_gap", 0.0) > row["tol"]:
        raise ExportError(f"{row['file']}: output {row['output']!r} at batch {row['batch']} "
                          f"differs from PyTorch by {row['max_abs_err']:.3g} (boundary gap "
                          f"{row.get('flip_gap', 0.0):.3g}), above the tolerance {tol:g}; "
                          "the file was not written")


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------

class _quiet_export(warnings.catch_warnings):
    """The legacy (TorchScript-based) ONNX exporter is used because the dynamo exporter needs
    onnxscript, which is not a dependency; its deprecation notice and the tracer's note about
    forward_features' input-size check (a constant for a fixed input size) are expected."""

    def __enter__(self):
        r = super().__enter__()
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return r


def _write_onnx(module: nn.Module, example: torch.Tensor, path: Path, outputs: List[str],
                opset: int, meta: Dict[str, str], doc: str,
                input_name: str = INPUT_NAME,
                dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None) -> None:
    """Export ``module`` to ``path`` with ``meta`` as metadata_props, then onnx.checker.
    dynamic_axes: default, the batch axis of the input and of every output."""
    import onnx
    dyn = dynamic_axes or {input_name: {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=[input_name],
                          output_names=outputs, dynamic_axes=dyn, opset_version=opset,
                          do_constant_folding=True)
    model = onnx.load(str(path))
    model.doc_string = doc
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises ValidationError / InferenceError
        raise ExportError(f"{path.name}: onnx.checker rejected the exported graph: {exc}") from None
    onnx.save(model, str(path))


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
    reference: Any = "orl"  # head.onnx's baseline faces (_reference_faces)
    tmp: Dict[str, Path] = field(default_factory=dict)  # file -> its temporary path (int8 reads)

    @property
    def name(self) -> str:
        return str(self.net.zoo_config["name"])

    @property
    def size(self) -> int:
        return int(self.net.input_size)

    def example(self) -> torch.Tensor:
        """The tracing input: a batch size the parity checks do not use."""
        return _parity_inputs(_TRACE_BATCH, self.size)


def _check_embeddings(job: _Export, fname: str,
                      run: Callable[[torch.Tensor], np.ndarray]) -> None:
    """Parity of an exported embedding model (``run``: input -> embeddings) at PARITY_BATCHES."""
    from zoo.metrics.verification import embed as zoo_embed
    for b in PARITY_BATCHES:
        x = _parity_inputs(b, job.size)
        # the reference is the evaluation code itself, not the wrapper
        ref = zoo_embed(job.net, x, flip=job.flip).numpy()
        got = run(x)
        _check(job.rows, {"file": fname, "output": EMBEDDING_OUTPUT, "batch": b,
                          "max_abs_err": float(np.abs(ref - got).max()),
                          "tol": job.tolerance}, job.tolerance, job.log)


def _export_embedding(job: _Export, path: Path) -> None:
    """embedding.onnx at ``path``: onnx.checker, then parity against zoo's embed."""
    _write_onnx(EmbeddingModel(job.net, flip=job.flip).eval(), job.example(), path,
                [EMBEDDING_OUTPUT], job.opset, job.meta,
                f"{job.name}: images -> L2-normalised embeddings")
    sess = _ort_session(path)
    _check_embeddings(job, EMBEDDING_FILE,
                      lambda x: sess.run(None, {INPUT_NAME: x.numpy()})[0])


def _export_featuremap(job: _Export, path: Path) -> None:
    """featuremap.onnx at ``path``: onnx.checker, then parity of the maps against the network's
    forward_features and of heatmaps/masks against the evaluation's top10_activation."""
    outputs = [FEATURE_OUTPUT, HEATMAP_OUTPUT, MASK_OUTPUT]
    _write_onnx(FeatureMapModel(job.net).eval(), job.example(), path, outputs, job.opset,
                job.meta, f"{job.name}: images -> target-layer maps and top-"
                          f"{TOP_FRACTION:.0%} heatmaps at input size")
    sess = _ort_session(path)
    tol = job.tolerance
    for b in PARITY_BATCHES:
        x = _parity_inputs(b, job.size)
        with torch.no_grad():
            ref_f = job.net.forward_features(x).numpy()
        got_f, got_h, got_m = sess.run(outputs, {INPUT_NAME: x.numpy()})
        # maps are not normalised: the tolerance is relative to their scale
        scale = max(1.0, float(np.abs(ref_f).max()))
        _check(job.rows, {"file": FEATUREMAP_FILE, "output": FEATURE_OUTPUT, "batch": b,
                          "max_abs_err": float(np.abs(ref_f - got_f).max()),
                          "tol": tol * scale}, tol, job.log)
        _check(job.rows, {"file": FEATUREMAP_FILE, "output": f"{HEATMAP_OUTPUT}+{MASK_OUTPUT}",
                          "batch": b, **_mask_error(ref_f, got_h, got_m, job.size, tol * scale),
                          "tol": tol * scale}, tol, job.log)


def _reference_faces(reference: Any, log: Callable[[str], None]) -> Tuple[List[Path], str]:
    """The face files whose mean target activity is head.onnx's baseline, and their name:
    "orl" (the ORL training identities, when the ORL faces are installed), a folder of identity
    sub-folders (the training data layout), or None (no faces: a zero baseline)."""
    if reference is None:
        return [], "zero"
    if isinstance(reference, str) and reference == "orl":
        from zoo.data.orl import ORLFaces
        try:
            faces = ORLFaces("train")
        except (ModuleNotFoundError, FileNotFoundError) as exc:
            log(f"note: no ORL faces for the per-part evidence baseline ({exc}); head.onnx "
                "measures the channel terms from zero maps")
            return [], "zero"
        paths, name = list(faces.paths), f"ORL training identities ({len(faces.identities)})"
    else:
        from zoo.data.folders import IdentityFolder
        paths, name = list(IdentityFolder(Path(reference)).paths), f"faces under {reference}"
    if len(paths) > REFERENCE_FACES:  # evenly spread: every identity, bounded export time
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, REFERENCE_FACES).astype(int)]
    return paths, name


def _reference_mean(job: _Export) -> Tuple[Optional[torch.Tensor], str]:
    """(C, P) mean pooled target maps of the reference faces, per view (with their mirrors when
    the embedding uses flip TTA), preprocessed as the runtime does; (None, "zero") without
    faces. With it the channel terms measure a face against the average face, not against
    silence, so the shared structure of all faces goes to the bias (docs/export.md)."""
    from .images import preprocess
    paths, name = _reference_faces(job.reference, job.log)
    if not paths:
        return None, "zero"
    cfg, total = job.net.zoo_config, None
    for start in range(0, len(paths), 32):
        x = torch.from_numpy(preprocess(paths[start:start + 32], job.size, cfg["mean"],
                                        cfg["std"], cfg.get("channel_order", "RGB")))
        views = [x, torch.flip(x, dims=[3])] if job.flip else [x]
        with torch.no_grad():
            for v in views:
                z = torch.flatten(job.net.pool(job.net.forward_features(v)), 2).double().sum(0)
                total = z if total is None else total + z
    count = len(paths) * (2 if job.flip else 1)
    job.log(f"per-part evidence baseline: mean target maps of {len(paths)} faces ({name})")
    return total / count, f"mean pooled target maps of {len(paths)} faces: {name}"


def _export_head(job: _Export, path: Path) -> None:
    """head.onnx at ``path`` (terms measured from the reference faces' mean, _reference_mean):
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

    reference, baseline = _reference_mean(job)
    model = HeadModel(job.net, reference).eval()
    # maps whose max-pool is the reference exactly: each pooled value on its 2 x 2 block
    p = int(round(model.reference.shape[1] ** 0.5))
    ref_maps = torch.zeros(1, c, n, n)
    ref_maps[0, :, :2 * p, :2 * p] = model.reference.reshape(c, p, p).repeat_interleave(
        2, 1).repeat_interleave(2, 2)
    _write_onnx(model, maps(_TRACE_BATCH), path, outputs, job.opset,
                dict(job.meta, evidence_baseline=baseline),
                f"{job.name}: target maps -> per-channel embedding terms and bias",
                input_name=FEATURE_OUTPUT)
    sess = _ort_session(path)
    for b in PARITY_BATCHES:
        fmap = maps(b)
        with torch.no_grad():
            ref = job.net.forward_head(fmap).double().numpy()
        terms, bias = sess.run(outputs, {FEATURE_OUTPUT: fmap.numpy()})
        got = terms.astype(np.float64).sum(1) + bias
        scale = max(1.0, float(np.abs(ref).max()))
        _check(job.rows, {"file": HEAD_FILE, "output": f"{CHANNEL_TERMS_OUTPUT}+bias", "batch": b,
                          "max_abs_err": float(np.abs(ref - got).max()),
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
        _check(job.rows, {"file": HEAD_FILE, "output": f"{CHANNEL_TERMS_OUTPUT} per channel",
                          "batch": b, "max_abs_err": err, "tol": job.tolerance * scale},
               job.tolerance, job.log)


def _export_torchscript(job: _Export, path: Path) -> None:
    """model.ts at ``path`` (traced embedding model, metadata.json as an extra file), then
    parity of the reloaded file against zoo's embed."""
    with _quiet_export(), torch.no_grad():
        traced = torch.jit.trace(EmbeddingModel(job.net, flip=job.flip).eval(),
                                 (job.example(),), check_trace=False)
        traced.save(str(path), _extra_files={"metadata.json": json.dumps(job.meta)})
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    _check_embeddings(job, TORCHSCRIPT_FILE, run)


def _check_top_fraction() -> None:
    from zoo.metrics import explainability
    if explainability.TOP_FRACTION != TOP_FRACTION:  # the masks must be the evaluation's
        raise ExportError(f"export's top fraction {TOP_FRACTION} differs from "
                          f"zoo.metrics.explainability.TOP_FRACTION "
                          f"{explainability.TOP_FRACTION}; update export/channel_table.py")


def export_model(name_or_path: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
                 weights: Optional[Union[str, os.PathLike]] = None, opset: int = DEFAULT_OPSET,
                 tolerance: float = DEFAULT_TOLERANCE, flip: bool = True,
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
    int8: an export.quantize.Int8Options: also write embedding-int8.onnx (and
    featuremap-int8.onnx with the featuremap), each only if it passes its accuracy gate
    (export.quantize; a failed gate raises Int8GateError and nothing is written).
    detector: also write the runtime's face detector (facenet-pytorch's MTCNN as ONNX,
    export.detector_onnx) into ``out_dir/detector/``, which `--crop` and the part locator use.

    Each artifact is written to a temporary name by its own writer, which also runs its checks;
    only when all pass are they renamed into place. On any failure the temporary files go.
    """
    import zoo
    log = log or (lambda s: None)
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    _check_top_fraction()
    if detector:  # fail before the model work when facenet-pytorch is missing
        from .detector_onnx import require_facenet
        require_facenet()
    net = zoo.load(name_or_path, weights=weights)
    net.eval()
    table = _parts_table(net, parts, log)
    meta = build_metadata(net.zoo_config, flip=flip, parts=table, threshold_key=threshold_key)
    if "threshold" not in meta:
        log("note: the model has no evaluation metrics, so the export carries no verification "
            "threshold (runtime users must pass one)")
    int8_plan = None
    if int8 is not None:  # calibration and gate faces are checked before anything is exported
        from .quantize import plan_int8
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
            from .detector_onnx import export_detector
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
