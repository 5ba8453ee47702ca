"""Input dependence: does a channel fire where it does because of the face, or whatever the input?

Not a metric of the paper. A template-matching loss with a uniform marginal rewards any sharply
peaked map, including one that peaks at the same cell for every input (zero padding makes an
image-border cell easy to detect). Such a channel scores well on PE, LS and peaks while
explaining nothing. These measures compare the maps of faces (I, C, n, n) with the maps of
content-free probe images (B, C, n, n; zoo.data.content_free: blank, noise, patterns):

* ``fixed_cell_channels``  per channel: does it peak at one cell on (almost) every face AND on
                           most probes? Such a channel fires at a fixed cell whatever the input.
* ``input_dependence``     graded, per channel in [0, 1]: 1 - max over probes of (overlap of the
                           probe map's spatial distribution with the faces' average one) x
                           (probe peak / the channel's median face peak, capped at 1). 0: the
                           channel does on a blank image what it does on faces; 1: it is silent
                           on every probe, or fires elsewhere. (A plain "fires on a blank image"
                           test does not discriminate: VGG+BN channels respond strongly to
                           constant images, softmax or not.)
* ``translation_following`` the share of (face, channel) peaks that move with the face when
                           its content is shifted by one cell, and the share that stay put.
                           Faces in a data set like ORL are aligned, so a channel that always
                           fires at one interior cell looks "consistent" on faces; shifting the
                           content tells a part detector (follows) from a position detector
                           (stays), whatever the probes show.
* ``ring_share``           the share of given (image, channel) argmax cells on the outer ring
                           of the map, to compare with ``uniform_ring_share``.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from .explainability import outer_ring

__all__ = ["FACE_AGREEMENT", "FIRING_FRACTION", "argmax_cells", "peak_cell_counts",
           "fixed_cell_channels",
           "input_dependence", "translation_following", "ring_share", "uniform_ring_share"]

FACE_AGREEMENT = 0.9     # a fixed channel peaks at its modal cell on >= 90% of the faces
FIRING_FRACTION = 0.1    # a probe "fires" a channel when its peak >= 10% of the median face peak


def argmax_cells(maps: np.ndarray) -> np.ndarray:
    """Row-major argmax cell of every map: (..., n, n) -> (...)."""
    m = np.asarray(maps)
    return m.reshape(*m.shape[:-2], -1).argmax(-1)


def peak_cell_counts(maps: np.ndarray) -> np.ndarray:
    """(I, C, n, n) maps -> (C, n*n) int64: per channel, on how many images its argmax fell on
    each cell (row-major); images on which the channel is silent (max <= 0) have no place and
    are not counted."""
    m = np.asarray(maps)
    flat = m.reshape(*m.shape[:2], -1)
    cells, fires = flat.argmax(-1), flat.max(-1) > 0
    return np.stack([np.bincount(cells[fires[:, c], c], minlength=flat.shape[-1])
                     for c in range(flat.shape[1])]).astype(np.int64)


def _check(face_maps, probe_maps):
    f = np.asarray(face_maps, dtype=np.float64)
    b = np.asarray(probe_maps, dtype=np.float64)
    if f.ndim != 4 or b.ndim != 4 or f.shape[1:] != b.shape[1:]:
        raise ValueError(f"expected face maps (I, C, n, n) and probe maps (B, C, n, n) of the same "
                         f"channels and size, got {f.shape} and {b.shape}")
    if len(f) == 0 or len(b) == 0:
        raise ValueError("input dependence needs at least one face and one probe image")
    return f, b


def _face_peaks(f: np.ndarray) -> np.ndarray:
    """(C,) the median over faces of each channel's peak value."""
    return np.median(f.reshape(*f.shape[:2], -1).max(-1), axis=0)


def fixed_cell_channels(face_maps: np.ndarray, probe_maps: np.ndarray,
                        agreement: float = FACE_AGREEMENT,
                        firing: float = FIRING_FRACTION) -> Dict[str, np.ndarray]:
    """Channels that fire at a fixed cell whatever the input.

    A channel is "fixed" when (1) its argmax is its modal cell on at least ``agreement`` of the
    faces and (2) at least half of the probe images fire it (peak >= ``firing`` x its median
    face peak) with their argmax on that same cell. "dead": constant on every face (never
    fixed). Returns {"fixed", "dead" (C,) bool, "modal_cell" (C,) int, "face_agreement" (C,)}.
    """
    f, b = _check(face_maps, probe_maps)
    n_ch = f.shape[1]
    flat_f = f.reshape(*f.shape[:2], -1)
    dead = (flat_f.max(-1) == flat_f.min(-1)).all(0)
    cells = argmax_cells(f)                                        # (I, C)
    modal = np.array([np.bincount(cells[:, c]).argmax() for c in range(n_ch)])
    agree = (cells == modal[None]).mean(0)
    flat_b = b.reshape(*b.shape[:2], -1)
    fires = flat_b.max(-1) >= firing * _face_peaks(f)[None]
    fires &= flat_b.max(-1) > flat_b.min(-1)
    at_modal = fires & (argmax_cells(b) == modal[None])            # (B, C)
    fixed = (~dead) & (agree >= agreement) & (at_modal.sum(0) * 2 >= len(b))
    return {"fixed": fixed, "dead": dead, "modal_cell": modal, "face_agreement": agree}


def input_dependence(face_maps: np.ndarray, probe_maps: np.ndarray) -> np.ndarray:
    """(C,) graded input dependence in [0, 1] (module docstring); dead channels get 0.

    overlap(b) = sum over cells of min(p_F, p_b), where p_b is the probe map divided by its sum
    and p_F the mean over faces of the same normalised face maps (1 when the distributions are
    equal, 0 when disjoint); strength(b) = min(1, probe peak / median face peak)."""
    f, b = _check(face_maps, probe_maps)
    flat_f = f.reshape(*f.shape[:2], -1)
    flat_b = b.reshape(*b.shape[:2], -1)

    def dist(x):
        s = x.sum(-1, keepdims=True)
        return np.divide(x, s, out=np.zeros_like(x), where=s > 0)

    p_face = dist(flat_f).mean(0)                                  # (C, K)
    p_probe = dist(flat_b)                                         # (B, C, K)
    overlap = np.minimum(p_face[None], p_probe).sum(-1)            # (B, C)
    face_peak = _face_peaks(f)
    strength = np.minimum(1.0, np.divide(flat_b.max(-1), face_peak[None],
                                         out=np.zeros(flat_b.shape[:2]),
                                         where=face_peak[None] > 0))
    dep = 1.0 - (overlap * strength).max(0)
    dead = (flat_f.max(-1) == flat_f.min(-1)).all(0)
    return np.where(dead, 0.0, np.clip(dep, 0.0, 1.0))


def translation_following(maps: np.ndarray, shifted_maps: np.ndarray, shift: int = 1
                          ) -> Dict[str, float]:
    """Maps (I, C, n, n) of faces and of the same faces with their content moved ``shift`` cells
    to the right. Over the (face, channel) pairs that fire in both (non-constant maps) and whose
    peak can move (column + shift < n): "follows" = the share whose argmax moved by exactly
    ``shift`` columns (same row), "stays" = the share whose argmax did not move, and
    "position_channels" = the share of channels (with such pairs) whose peak stays put on at
    least FACE_AGREEMENT of the faces: position detectors, whatever the probes show;
    "channel_stays" (C,) = per channel, the share of its faces on which its peak stayed put."""
    a = np.asarray(maps, dtype=np.float64)
    b = np.asarray(shifted_maps, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"expected two (I, C, n, n) map arrays of one shape, got {a.shape}, "
                         f"{b.shape}")
    n = a.shape[-1]
    fa, fb = a.reshape(*a.shape[:2], -1), b.reshape(*b.shape[:2], -1)
    ca, cb = fa.argmax(-1), fb.argmax(-1)
    ok = (fa.max(-1) > fa.min(-1)) & (fb.max(-1) > fb.min(-1)) & (ca % n + shift < n)
    stays = (cb == ca) & ok
    counted = ok.sum(0) > 0
    # per channel: the share of its faces on which its peak stayed put (0 with no pairs)
    channel_stays = np.divide(stays.sum(0), ok.sum(0), out=np.zeros(ok.shape[1]),
                              where=counted)
    if not ok.any():
        return {"follows": float("nan"), "stays": float("nan"), "position_channels": float("nan"),
                "pairs": 0, "channel_stays": channel_stays}
    return {"follows": float((cb == ca + shift)[ok].mean()), "stays": float(stays[ok].mean()),
            "position_channels": float((channel_stays[counted] >= FACE_AGREEMENT).mean()),
            "pairs": int(ok.sum()), "channel_stays": channel_stays}


def ring_share(cells: np.ndarray, n: int) -> float:
    """The share of the given row-major cells (any shape) that lie on the n x n map's outer ring."""
    cells = np.asarray(cells).ravel()
    if cells.size == 0:
        return float("nan")
    return float(outer_ring(n).ravel()[cells].mean())


def uniform_ring_share(n: int) -> float:
    """The outer-ring share of uniformly spread cells: 1 - (n-2)^2 / n^2 (0.49 at 7 x 7)."""
    return float(outer_ring(n).mean())
