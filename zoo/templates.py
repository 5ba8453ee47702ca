"""Activation templates of the paper (Eq. 2-4 and the negative template): one-peak,
two-peak and negative.

Canonical order of the full unique set at map size n (K = n*n positions, row-major p = i*n + j):

    index 0 .. K-1                       one-peak template centred at position p = index
    index K .. K + C(K,2) - 1            two-peak template of positions (a, b), a < b, in
                                         lexicographic order (0,1), (0,2), ..., (K-2, K-1)
    index K + C(K,2)                     the negative template (-tau everywhere)

so the full set has K + C(K,2) + 1 templates (19,307 at n=14). The "evenly taken" subset of
size M (the paper uses 400, "evenly" from the original set) is the templates at the M indices
round(k * (total-1) / (M-1)), k = 0..M-1, of that order: evenly spaced in index, always holding the
first one-peak template and the negative template (see docs/paper-notes.md). Only the selected
templates are built, so a subset at n=28 (307,721 templates in the full set) costs M*n*n memory.
"""
from __future__ import annotations

import math
import threading
from typing import Dict, Tuple

import numpy as np
import torch

__all__ = [
    "one_peak_template", "two_peak_template", "negative_template", "full_template_count",
    "evenly_spaced_indices", "template_kinds", "build_templates", "get_templates",
    "DEFAULT_TAU", "DEFAULT_RADIUS", "DEFAULT_NUM_TEMPLATES", "DEFAULT_BETA",
]

# The paper's constants, each defined here once (zoo.config, zoo.ecloss and the CLIs import them).
DEFAULT_TAU = 1e-3      # paper Eq. 2: tau = 0.001
DEFAULT_RADIUS = 4.0    # paper Eq. 2: r = 4 (at 14x14)
DEFAULT_NUM_TEMPLATES = 400  # paper: 400 taken evenly
# paper: beta, the weight of the MI term in L = alpha * CE - beta * MI (zoo.ecloss.total_loss),
# starts at 1e-5 and is then "changed automatically" (zoo.ecloss.BetaPolicy). It lives here, the
# leaf module of the paper's numbers, because zoo.config (which zoo.ecloss imports) needs it too.
DEFAULT_BETA = 1e-5


def _grid(n: int) -> np.ndarray:
    """(n*n, 2) float64 (row, col) coordinates in row-major order."""
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.stack([ii.ravel(), jj.ravel()], axis=1).astype(np.float64)


def _one_peak_rows(n: int, centres: np.ndarray, r: float, tau: float) -> np.ndarray:
    """Eq. 2 for many centres at once: (len(centres), n*n) float64."""
    grid = _grid(n)
    c = grid[centres]                                              # (P, 2)
    dist = np.sqrt(((grid[None, :, :] - c[:, None, :]) ** 2).sum(-1))
    return tau * np.maximum(1.0 - dist / r, -1.0)


def _check_geometry(n: int, r: float, tau: float) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"map size n must be a positive integer, got {n!r}")
    if not r > 0:
        raise ValueError(f"template radius r must be > 0, got {r!r}")
    if not tau > 0:
        raise ValueError(f"template amplitude tau must be > 0, got {tau!r}")


def one_peak_template(n: int, i: int, j: int, r: float = DEFAULT_RADIUS,
                      tau: float = DEFAULT_TAU) -> np.ndarray:
    """Paper Eq. 2: T^(i,j)_(u,v) = tau * max(1 - ||(u,v) - (i,j)||_2 / r, -1); an (n, n) array."""
    _check_geometry(n, r, tau)
    if not (0 <= i < n and 0 <= j < n):
        raise ValueError(f"peak ({i}, {j}) lies outside the {n}x{n} map")
    return _one_peak_rows(n, np.array([i * n + j]), r, tau).reshape(n, n)


def two_peak_template(n: int, peak_a: Tuple[int, int], peak_b: Tuple[int, int],
                      r: float = DEFAULT_RADIUS, tau: float = DEFAULT_TAU) -> np.ndarray:
    """Paper Eq. 3: the elementwise max of the one-peak templates of two distinct peaks."""
    if tuple(peak_a) == tuple(peak_b):
        raise ValueError(f"a two-peak template needs two distinct peaks, got {peak_a} twice")
    return np.maximum(one_peak_template(n, *peak_a, r=r, tau=tau),
                      one_peak_template(n, *peak_b, r=r, tau=tau))


def negative_template(n: int, tau: float = DEFAULT_TAU) -> np.ndarray:
    """The paper's negative template (defined after Eq. 4, unnumbered): T^- = -tau everywhere
    (the channel fires nowhere)."""
    _check_geometry(n, 1.0, tau)
    return np.full((n, n), -tau, dtype=np.float64)


def full_template_count(n: int) -> int:
    """n^2 one-peak + C(n^2, 2) two-peak + 1 negative (19,307 at n = 14)."""
    k = n * n
    return k + k * (k - 1) // 2 + 1


def evenly_spaced_indices(total: int, m: int) -> np.ndarray:
    """The M indices round(k*(total-1)/(M-1)) of the canonical order (our reading of "evenly").

    M = 1 keeps the negative template alone; M >= total returns the full set.
    """
    if m < 1:
        raise ValueError(f"number of templates must be >= 1, got {m}")
    if m >= total:
        return np.arange(total, dtype=np.int64)
    if m == 1:
        return np.array([total - 1], dtype=np.int64)
    idx = np.floor(np.arange(m, dtype=np.float64) * (total - 1) / (m - 1) + 0.5).astype(np.int64)
    assert len(np.unique(idx)) == m  # spacing >= 1 whenever m < total
    return idx


def _decode_pairs(k: int, pair_idx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Lexicographic index of (a, b), a < b < k -> (a, b)."""
    # start[a] = number of pairs whose first element is < a = a*k - a*(a+1)/2
    a_all = np.arange(k, dtype=np.int64)
    start = a_all * k - a_all * (a_all + 1) // 2
    a = np.searchsorted(start, pair_idx, side="right") - 1
    b = pair_idx - start[a] + a + 1
    return a, b


def template_kinds(n: int, indices: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For canonical indices return (kind, a, b): kind 1 = one-peak at a, 2 = two-peak (a, b),
    0 = negative; a, b are row-major positions (-1 where unused)."""
    k = n * n
    total = full_template_count(n)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= total):
        raise ValueError(f"template index out of range [0, {total}) for n={n}")
    kind = np.where(indices < k, 1, np.where(indices == total - 1, 0, 2))
    a = np.full(indices.shape, -1, dtype=np.int64)
    b = np.full(indices.shape, -1, dtype=np.int64)
    one = kind == 1
    a[one] = indices[one]
    two = kind == 2
    if two.any():
        a[two], b[two] = _decode_pairs(k, indices[two] - k)
    return kind, a, b


def build_templates(n: int, num_templates: int | str | None = DEFAULT_NUM_TEMPLATES,
                    r: float = DEFAULT_RADIUS, tau: float = DEFAULT_TAU,
                    positions: np.ndarray | None = None) -> np.ndarray:
    """The (M, n, n) float64 template array: the evenly taken subset of size M, or the full set
    when ``num_templates`` is None or "full".

    ``positions``: the row-major cells a template peak may sit on, every cell when None (the
    paper). Given, the canonical set is built over those kp cells in their order (one-peak
    templates, two-peak templates of two of them, the negative template: kp + C(kp, 2) + 1) and
    M are taken evenly from it."""
    _check_geometry(n, r, tau)
    pos = (np.arange(n * n, dtype=np.int64) if positions is None
           else np.asarray(positions, dtype=np.int64))
    if pos.ndim != 1 or not len(pos) or pos.min() < 0 or pos.max() >= n * n:
        raise ValueError(f"template peak positions must be cells of the {n}x{n} map")
    kp = len(pos)
    total = kp + kp * (kp - 1) // 2 + 1
    if num_templates is None or num_templates == "full":
        indices = np.arange(total, dtype=np.int64)
    else:
        indices = evenly_spaced_indices(total, int(num_templates))
    # the canonical order over kp positions is the n*n order's with kp in place of n*n
    kind = np.where(indices < kp, 1, np.where(indices == total - 1, 0, 2))
    a = np.where(kind == 1, indices, -1)
    b = np.full(indices.shape, -1, dtype=np.int64)
    two = kind == 2
    if two.any():
        a[two], b[two] = _decode_pairs(kp, indices[two] - kp)
    k = n * n
    one_peak = _one_peak_rows(n, pos, r, tau)                     # (kp, K): row q peaks at pos[q]
    out = np.empty((len(indices), k), dtype=np.float64)
    out[kind == 0] = -tau
    out[kind == 1] = one_peak[a[kind == 1]]
    out[two] = np.maximum(one_peak[a[two]], one_peak[b[two]])
    return out.reshape(len(indices), n, n)


_CACHE: Dict[tuple, torch.Tensor] = {}
_CACHE_LOCK = threading.Lock()


def get_templates(n: int, num_templates: int | str | None = DEFAULT_NUM_TEMPLATES,
                  r: float = DEFAULT_RADIUS, tau: float = DEFAULT_TAU, *,
                  device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Cached (M, n, n) template tensor on ``device`` in ``dtype``. Treat it as read-only."""
    m_key = "full" if num_templates is None else num_templates
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (int(n), str(m_key), float(r), float(tau), str(device), dtype)
    with _CACHE_LOCK:
        t = _CACHE.get(key)
        if t is None:
            t = torch.from_numpy(build_templates(n, m_key, r, tau)).to(device=device,
                                                                        dtype=dtype)
            _CACHE[key] = t
    return t


def default_radius_for(n: int) -> float:
    """The paper's r = 4 is stated at 14x14 maps; we keep the same fraction of the map (r = 4n/14)
    for other sizes, so the template shapes match across input sizes."""
    return DEFAULT_RADIUS * n / 14.0


__all__.append("default_radius_for")


def flatten_maps(x: torch.Tensor, templates: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bring maps to (N, n*n) and templates to (M, n*n), checking that they fit.

    Accepts maps as (B, C, n, n) - every channel of every image is one map - or (N, n*n), and
    templates as (M, n, n) or (M, n*n); (B, C, H, W) maps must have the templates' shape. The
    input contract of Eq. 5-6, shared by the reference (zoo.ecloss) and the fused op (zoo.ops).
    """
    if not isinstance(x, torch.Tensor) or not isinstance(templates, torch.Tensor):
        raise TypeError("feature maps and templates must be torch tensors")
    grid = None  # the templates' (n, n): given by (M, n, n), square n*n for (M, n*n)
    if templates.dim() == 3:
        grid = tuple(templates.shape[1:])
        templates = templates.reshape(templates.shape[0], -1)
    if templates.dim() != 2 or templates.shape[0] < 1:
        raise ValueError(f"templates must be (M, n, n) or (M, n*n) with M >= 1, got "
                         f"{tuple(templates.shape)}")
    k = templates.shape[1]
    if grid is None:
        n = math.isqrt(k)
        grid = (n, n) if n * n == k else None
    if x.dim() == 4:
        # The shape, not only H*W: 7x28 maps against 14x14 templates would be scored as if
        # they were 14x14 maps, every position in the wrong place.
        if tuple(x.shape[2:]) != grid:
            have = f"{grid[0]}x{grid[1]} ({k} positions)" if grid else f"{k} positions (not square)"
            raise ValueError(f"feature maps are {x.shape[2]}x{x.shape[3]} but the templates are "
                             f"{have}")
        x = x.reshape(-1, k)
    elif x.dim() != 2 or x.shape[1] != k:
        raise ValueError(f"feature maps must be (B, C, n, n) or (N, {k}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("empty batch: ECLoss needs at least one feature map")
    if x.dtype != templates.dtype:
        raise TypeError(f"dtype mismatch: maps are {x.dtype}, templates {templates.dtype}")
    if x.device != templates.device:
        raise ValueError(f"device mismatch: maps on {x.device}, templates on {templates.device}")
    if not x.is_floating_point():
        raise TypeError(f"feature maps must be floating point, got {x.dtype}")
    return x, templates


__all__.append("flatten_maps")
assert math.comb(196, 2) + 196 + 1 == full_template_count(14) == 19307
