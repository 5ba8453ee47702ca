"""One ONNX file from a torch module: traced, metadata written, onnx.checker, or ExportError.

Shared by the model's files (zoo.exporting.model_export) and the face detector's
(zoo.exporting.detector). The legacy (TorchScript-based) exporter is used (``dynamo=False``):
the dynamo exporter needs onnxscript, which is not a dependency.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn

from export.model_files import INPUT_NAME

__all__ = ["ExportError", "DEFAULT_OPSET", "QuietExport", "write_onnx", "set_metadata_props"]

DEFAULT_OPSET = 17


class ExportError(RuntimeError):
    """The export produced a model that fails a check (parity, ONNX checker)."""


class QuietExport(warnings.catch_warnings):
    """The legacy ONNX exporter's deprecation notice and the tracer's note about
    forward_features' input-size check (a constant for a fixed input size) are expected: they
    would only bury the export's own log."""

    def __enter__(self):
        r = super().__enter__()
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return r


def set_metadata_props(model, meta: Dict[str, str]) -> None:
    """Replace an onnx ModelProto's metadata_props by ``meta`` (string keys and values)."""
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path, outputs: List[str],
               opset: int, meta: Dict[str, str], doc: str,
               input_name: str = INPUT_NAME,
               dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None) -> None:
    """Export ``module`` to ``path`` with ``meta`` as metadata_props, then onnx.checker
    (full check; ExportError when it rejects the graph).
    dynamic_axes: default, the batch axis of the input and of every output."""
    import onnx
    dyn = dynamic_axes or {input_name: {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    with QuietExport(), torch.no_grad():
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=[input_name],
                          output_names=outputs, dynamic_axes=dyn, opset_version=opset,
                          do_constant_folding=True)
    model = onnx.load(str(path))
    model.doc_string = doc
    set_metadata_props(model, meta)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises ValidationError / InferenceError
        raise ExportError(f"{path.name}: onnx.checker rejected the exported graph: {exc}") from None
    onnx.save(model, str(path))
