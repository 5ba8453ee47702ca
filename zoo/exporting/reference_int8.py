"""``--int8`` for a reference model that takes aligned chips (dlib-resnet): its calibration and
gate faces are chips, not files.

The int8 files of a zoo model are calibrated and gated on face files (zoo.exporting.quantize);
dlib's network only knows the aligned 150 x 150 chips the runtime cuts (export.face_input), so
here both sets are ORL chips cut by the export's own detector: calibration on the training
identities (the faces its threshold was chosen on), the gate on the held-out identities of the
zoo's split, with the same gate as every int8 file (zoo.exporting.int8_gate.embedding_gate).
``--calib`` / ``--gate`` folders are refused for such a model: their faces would need the same
alignment, which the defaults guarantee.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np

from export.model_files import EMBEDDING_FILE, EMBEDDING_OUTPUT

from .int8_faces import Int8Error
from .int8_gate import Int8GateError, embedding_gate
from .parity import cpu_session
from .quantize import QUANTIZED_OPS, Int8Options, quantize_onnx, run_batches, set_file_metadata


def check_reference_options(name: str, options: Int8Options) -> None:
    if options.calib is not None or options.gate is not None:
        raise Int8Error(f"{name} takes aligned chips: its int8 calibration and gate are ORL chips "
                        "cut by the export's detector; drop --calib / --gate")


def write_reference_int8(float_path: Path, out_path: Path, meta: Dict[str, str],
                         calib: np.ndarray, gate: np.ndarray, gate_ids: np.ndarray,
                         options: Int8Options, log: Callable[[str], None]) -> Dict[str, Any]:
    """Quantize ``float_path`` into ``out_path`` calibrated on the preprocessed chips ``calib``,
    gate it on ``gate`` (preprocessed chips of identities ``gate_ids``), write its metadata;
    Int8GateError (nothing kept) when the gate fails. Returns the gate's report."""
    pick = np.unique(np.linspace(0, len(calib) - 1, min(len(calib), options.calib_faces))
                     .round().astype(int))   # spread over the identities, not the first ones
    calib = calib[pick]
    quantize_onnx(float_path, out_path, calib,
                  QUANTIZED_OPS[EMBEDDING_FILE], options.method, options.per_channel)
    f_emb = run_batches(cpu_session(float_path), gate, EMBEDDING_OUTPUT)
    q_emb = run_batches(cpu_session(out_path), gate, EMBEDDING_OUTPUT)
    names = [f"s{i}" for i in gate_ids]
    result = embedding_gate(f_emb, q_emb, gate_ids, float(meta["threshold"]), names,
                            "model metadata (ORL training identities)")
    log(f"int8 gate on {len(gate)} held-out ORL chips: {result.summary()}")
    report = {k: v for k, v in vars(result).items() if k != "failures"}
    report["passed"] = result.passed
    if not result.passed:
        out_path.unlink(missing_ok=True)
        raise Int8GateError("the int8 embedding failed its accuracy gate (held-out ORL chips): "
                            + "; ".join(result.failures) + ". Export without --int8")
    record = {"format": "QDQ", "source_file": EMBEDDING_FILE,
              "calibration": {"source": "ORL training identities, aligned chips",
                              "faces": int(len(calib)),
                              "method": options.method, "per_channel": options.per_channel},
              "gate": {"set": "ORL held-out identities, aligned chips", **report}}
    set_file_metadata(out_path, {**meta, "precision": "int8",
                                 "quantization": json.dumps(record, default=float)})
    return report
