"""Variants of ECLoss's maps and templates (our extensions and a control, not the paper's method),
taken by research.hooks.ExperimentHook (``--map-norm``, ``--template-peaks`` of
``python -m research.train``).

* ``normalize_maps`` ("max"): each map divided by its maximum before the correlation, so the MI
  measures the map's shape only and cannot be raised by simply scaling activations up
  (docs/paper-notes.md).
* template peaks "interior": template peaks only on the cells off the map's outer ring (a map that
  peaks on the image border then matches no template well, so the MI stops rewarding border
  peaks); "permuted", a CONTROL: the paper's templates with the cells of each template shuffled
  (same values, no spatial shape), so a study can tell gains of template matching from gains of
  any sharpening pressure of the same strength. "all" is the paper's set.
"""
from __future__ import annotations

import numpy as np
import torch

from zoo.templates import build_templates

__all__ = ["MAP_NORMS", "TEMPLATE_PEAKS", "PERMUTED_TEMPLATE_SEED", "normalize_maps",
           "peak_positions", "permute_template_cells", "variant_templates"]

MAP_NORMS = ("none", "max")
TEMPLATE_PEAKS = ("all", "interior", "permuted")
PERMUTED_TEMPLATE_SEED = 0


def normalize_maps(x: torch.Tensor, how: str = "none", eps: float = 1e-6) -> torch.Tensor:
    """"max" divides each n x n map by its maximum (maps are post-ReLU, so the result lies in
    [0, 1]); a dead map (max < eps) stays near zero. "none" returns x unchanged (the paper)."""
    if how == "none":
        return x
    if how != "max":
        raise ValueError(f"map normalisation must be one of {MAP_NORMS}, got {how!r}")
    return x / x.amax(dim=(-2, -1), keepdim=True).clamp_min(eps)


def peak_positions(n: int, peaks: str = "all") -> np.ndarray:
    """Row-major positions a template peak may sit on: every cell ("all", the paper; "permuted"
    too) or the cells off the outer ring ("interior")."""
    if peaks not in TEMPLATE_PEAKS:
        raise ValueError(f"template peaks must be one of {TEMPLATE_PEAKS}, got {peaks!r}")
    ii, jj = np.divmod(np.arange(n * n), n)
    if peaks in ("all", "permuted"):
        return np.arange(n * n, dtype=np.int64)
    if n < 3:
        raise ValueError(f"a {n}x{n} map has no interior cells for interior template peaks")
    return np.flatnonzero((ii > 0) & (ii < n - 1) & (jj > 0) & (jj < n - 1)).astype(np.int64)


def permute_template_cells(flat: np.ndarray, seed: int) -> np.ndarray:
    """(M, K) templates with each row's K cells in its own random order (numpy PCG64 ``seed``):
    every template keeps its values (so its norm and the MI's scale) and loses its shape."""
    rng = np.random.default_rng(seed)
    return np.stack([row[rng.permutation(row.shape[0])] for row in flat])


def variant_templates(n: int, num_templates, r: float, tau: float,
                      peaks: str = "all") -> np.ndarray:
    """The (M, n, n) float64 templates of a peaks variant: zoo.templates.build_templates over
    ``peak_positions(n, peaks)`` (the canonical set over those cells, M taken evenly), and for
    "permuted" the "all" set with the n*n cells of each template shuffled by its own seeded
    permutation."""
    out = build_templates(n, num_templates, r, tau, positions=peak_positions(n, peaks))
    if peaks == "permuted":
        out = permute_template_cells(out.reshape(len(out), -1), PERMUTED_TEMPLATE_SEED)
        out = out.reshape(len(out), n, n)
    return out
