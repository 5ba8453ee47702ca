"""The export's checks against PyTorch: seeded inputs, the onnxruntime session the runtime
would use on a CPU, the mask comparison, and one parity row (logged; ExportError above the
tolerance).

Parity runs at PARITY_BATCHES, never at TRACE_BATCH (the batch the graphs are traced at), so
every check also proves the dynamic batch axis.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Union

import numpy as np
import torch

from export.channel_table import top_k_pixels
from zoo.metrics.explainability import top10_activation, upsample_maps

from .onnx_writer import ExportError

__all__ = ["DEFAULT_TOLERANCE", "PARITY_BATCHES", "TRACE_BATCH", "parity_inputs", "cpu_session",
           "mask_error", "check_row"]

DEFAULT_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 5)
TRACE_BATCH = 2  # traced at a batch size the parity check does not use: proves the dynamic axis


def parity_inputs(batch: int, size: int) -> torch.Tensor:
    """Seeded images of ``batch`` x 3 x size x size in the preprocessed range."""
    g = torch.Generator().manual_seed(1234 + batch)
    # Preprocessed images lie in [-1, 1] for mean = std = 0.5.
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


def cpu_session(path: Union[str, os.PathLike]):
    """An onnxruntime session as the runtime runs a file on a CPU: CPU provider,
    ORT_ENABLE_ALL, errors-only logging."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def mask_error(fmap: np.ndarray, got_heat: np.ndarray, got_mask: np.ndarray, size: int,
               tol: float) -> Dict[str, float]:
    """Heatmaps/masks against the evaluation's own top10_activation on the reference maps.

    Masks are thresholded, so a pixel equal to its channel's threshold to within float rounding
    may be kept by one backend and not the other: such flips are allowed only for pixels within
    ``tol`` of the threshold; everywhere else masks must agree and heatmap values match."""
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


def check_row(rows: List[Dict[str, Any]], row: Dict[str, Any], tol: float,
              log: Callable) -> None:
    """Record one parity ``row`` (file, output, batch, max_abs_err, tol[, flipped_pixels,
    flip_gap]) in ``rows`` and the log; ExportError when it is above its tolerance."""
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
