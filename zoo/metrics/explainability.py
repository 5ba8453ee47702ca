"""The paper's explainability metrics, one function per term.

Inputs are target-layer maps of one image, (C, n, n), and part masks at input size, (P, S, S)
(export.part_masks.PART_NAMES order). Every metric treats channels independently, so all are
invariant to the order of the channels.

* ``top10_activation``          Eq. 8-9: bilinear upsample to the input size, keep the top 10%.
* ``part_iou``                  Eq. 10: IoU of each channel's top-10% region with each part mask.
* ``part_precision``            ours: the share of each channel's top-10% region that lies on each
                                part mask (how much of what a picture shows is that part).
* ``part_explainability``       PE: mean over channels of the max-over-parts IoU, mean over images.
* ``location_consistency``      A_{i,k} (the share of images in which channel i's best part is
                                k) and the paper's S_i = sqrt(sum_k (A_{i,k} - 1/|K|)^2) / |K|;
                                LS = mean_i S_i. Also our "dominant share" max_k A_{i,k} (LS-max).
* ``activation_peaks`` /
  ``activation_robustness``     number of peaks of a map by topographic prominence; mean count.
* ``peak_counts``               mean peaks at several prominence thresholds, split into peaks on
                                the map's outer ring and in its interior.
* ``location_instability``      ICNN's measure (Zhang et al., CVPR 2018), an extra.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TOP_FRACTION", "PEAK_PROMINENCE", "PEAK_THRESHOLDS", "PART_IOU_FLOOR",
           "top10_activation", "upsample_maps", "part_iou", "part_precision", "best_parts",
           "part_explainability",
           "location_consistency", "paper_consistency", "outer_ring", "peak_prominences",
           "activation_peaks", "activation_robustness", "peak_counts", "location_instability"]

TOP_FRACTION = 0.10      # paper: the top 10% of the upsampled activation
PEAK_PROMINENCE = 0.10   # a peak counts when its prominence >= 10% of the map's range
PEAK_THRESHOLDS = (0.0, 0.10, 0.30)   # the paper gives none: report several (docs/paper-notes.md)
# A channel's region "lands on no part" when its best part IoU is below this floor. A top-10%
# region that holds a whole nose or mouth mask has an IoU of about 0.2-0.3; 0.05 means at most a
# sliver of a part (docs/paper-notes.md).
PART_IOU_FLOOR = 0.05


def upsample_maps(fmap: torch.Tensor | np.ndarray, size: int | Sequence[int]) -> torch.Tensor:
    """(C, n, n) -> (C, H, W) by bilinear interpolation (align_corners=False), float32."""
    x = torch.as_tensor(fmap, dtype=torch.float32)
    if x.dim() != 3:
        raise ValueError(f"expected maps (C, n, n), got {tuple(x.shape)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(x[None], size=hw, mode="bilinear", align_corners=False)[0]


def top10_activation(fmap: torch.Tensor | np.ndarray, size: int | Sequence[int],
                     fraction: float = TOP_FRACTION) -> np.ndarray:
    """Paper Eq. 8-9: per channel, the pixels of the upsampled map at or above the value that
    keeps the top ``fraction`` (10%) of pixels; (C, H, W) bool. Ties at the threshold are kept,
    so a channel can keep slightly more than 10%; pixels at the map's minimum are never kept:
    a sparse map (activation on fewer than 10% of the pixels, zero elsewhere) keeps only its
    active pixels, not the whole zero background, and a constant map (e.g. a dead, all-zero
    channel) keeps nothing, since no pixel stands out."""
    up = upsample_maps(fmap, size)
    c = up.shape[0]
    flat = up.reshape(c, -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    threshold = torch.topk(flat, k, dim=1).values[:, -1:]               # k-th largest per channel
    keep = (flat >= threshold) & (flat > flat.min(1, keepdim=True).values)
    return keep.reshape(up.shape).numpy()


def part_iou(activation: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """Paper Eq. 10: IoU(channel region, part mask) for every channel and part, (C, P)."""
    a = np.asarray(activation, dtype=bool).reshape(len(activation), -1).astype(np.float64)
    p = np.asarray(parts, dtype=bool).reshape(len(parts), -1).astype(np.float64)
    if a.shape[1] != p.shape[1]:
        raise ValueError(f"activation regions {np.shape(activation)[1:]} and part masks "
                         f"{np.shape(parts)[1:]} differ in size")
    inter = a @ p.T
    union = a.sum(1)[:, None] + p.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def part_precision(activation: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """OUR measure, not the paper's: |region & part| / |region| for every channel and part, (C, P);
    0 for an empty region. IoU also divides by the part's size, so a region that lies wholly on a
    large part (hair, cheek) scores low; precision asks only how much of the region shown to a
    user is the part it is labelled with, and half a region on the background scores 0.5."""
    a = np.asarray(activation, dtype=bool).reshape(len(activation), -1).astype(np.float64)
    p = np.asarray(parts, dtype=bool).reshape(len(parts), -1).astype(np.float64)
    if a.shape[1] != p.shape[1]:
        raise ValueError(f"activation regions {np.shape(activation)[1:]} and part masks "
                         f"{np.shape(parts)[1:]} differ in size")
    area = a.sum(1)[:, None]
    return np.divide(a @ p.T, area, out=np.zeros((len(a), len(p))), where=area > 0)


def best_parts(iou: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Each channel's best part (argmax IoU), or -1 ("none") where its best IoU is not above 0
    and below ``floor``: a region that lies (almost) outside every part mask is no part."""
    iou = np.asarray(iou)
    best = iou.argmax(-1)
    top = iou.max(-1)
    return np.where((top > 0) & (top >= floor), best, -1)


def part_explainability(ious: np.ndarray) -> float:
    """PE: for each image, the mean over channels of max_k IoU(channel, part k); averaged over
    images. ``ious`` is (I, C, P) or (C, P) for one image."""
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim == 2:
        ious = ious[None]
    return float(ious.max(-1).mean(-1).mean())


def paper_consistency(shares: np.ndarray) -> np.ndarray:
    """The paper's location consistency of each channel: S_i = sqrt(sum_k (A_ik - 1/|K|)^2) / |K|
    for part shares A_i (rows summing to 1 over the |K| parts). 0 when a channel lands on every
    part equally often; at most sqrt(1 - 1/|K|) / |K| (0.132 for 7 parts) when always on one."""
    a = np.asarray(shares, dtype=np.float64)
    k = a.shape[-1]
    return np.sqrt(((a - 1.0 / k) ** 2).sum(-1)) / k


def location_consistency(ious: np.ndarray, num_parts: Optional[int] = None,
                         floor: float = PART_IOU_FLOOR) -> Dict[str, object]:
    """Location consistency from (I, C, P) IoUs over I images.

    counts[i, k] = number of images whose best part for channel i is k; an image whose best IoU
    is below ``floor`` counts as "none" for that channel (none[i]). The paper's histogram A[i, k]
    is counts[i] / sum_k counts[i, k] (over the images where the channel lands on a part), its
    S_i = paper_consistency(A[i]) and LS = mean_i S_i (channels that never land on a part: 0).

    Also returned: "dominant_part" (argmax_k counts, -1 when the channel is "none" on at least half
    of the images: not a part channel), "dominant_share" = max_k counts / I (the share of all
    images on which the channel lands on its dominant part), "none_share" = none / I, and
    "LS_max" = mean_i max_k A[i, k] (OUR measure: the earlier reading of S_i; not the paper's).
    """
    ious = np.asarray(ious)
    if ious.ndim != 3:
        raise ValueError(f"expected IoUs (images, channels, parts), got {ious.shape}")
    n_img = ious.shape[0]
    p = num_parts or ious.shape[2]
    best = best_parts(ious, floor)                                   # (I, C)
    counts = np.zeros((ious.shape[1], p), dtype=np.int64)
    for k in range(p):
        counts[:, k] = (best == k).sum(0)
    none = (best < 0).sum(0)
    total = counts.sum(1)
    shares = np.divide(counts, total[:, None], out=np.zeros(counts.shape), where=total[:, None] > 0)
    s = np.where(total > 0, paper_consistency(shares), 0.0)
    s_max = shares.max(1)
    none_share = none / max(n_img, 1)
    dominant = np.where((total > 0) & (none_share < 0.5), counts.argmax(1), -1)
    return {"A": counts, "shares": shares, "S": s, "LS": float(s.mean()),
            "S_max": s_max, "LS_max": float(s_max.mean()), "dominant_part": dominant,
            "dominant_share": counts.max(1) / max(n_img, 1), "none_share": none_share,
            "none_fraction": float(none.sum() / max(none.size * n_img, 1))}


def outer_ring(n: int) -> np.ndarray:
    """(n, n) bool: the cells on the map's outer ring (first/last row and column)."""
    ring = np.ones((n, n), dtype=bool)
    ring[1:-1, 1:-1] = False
    return ring


def peak_prominences(fmap2d: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(summit cells, prominences) of every peak of one map, prominences as a fraction of the
    map's range (max - min), 8-connected; the highest summit has prominence 1. A constant map
    has no peaks.

    Prominence by the contour (0-dim persistence) method: visit cells from high to low; a cell
    joins the regions of its visited neighbours; when two regions meet at height h, the one with
    the lower summit ends with prominence (summit - h). Summits are row-major cell indices.
    """
    m = np.asarray(fmap2d, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {m.shape}")
    lo, hi = float(m.min()), float(m.max())
    if hi - lo <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    h, w = m.shape
    flat = m.ravel()
    order = np.argsort(-flat, kind="stable")
    parent = np.full(flat.size, -1, dtype=np.int64)
    summit = np.zeros(flat.size, dtype=np.int64)       # root -> its summit cell

    def find(a):
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:          # path compression
            parent[a], a = root, parent[a]
        return root

    cells, proms = [], []
    for idx in order:
        parent[idx] = idx
        summit[idx] = idx
        r, c = divmod(int(idx), w)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if (dr or dc) and 0 <= rr < h and 0 <= cc < w and parent[rr * w + cc] >= 0:
                    a, b = find(idx), find(rr * w + cc)
                    if a == b:
                        continue
                    sa, sb = flat[summit[a]], flat[summit[b]]
                    low, high = (a, b) if sa < sb else (b, a)
                    if summit[low] != idx:                 # the lower region's summit ends here
                        cells.append(int(summit[low]))
                        proms.append((flat[summit[low]] - flat[idx]) / (hi - lo))
                    parent[low] = high
    cells.append(int(order[0]))
    proms.append(1.0)
    return np.asarray(cells, np.int64), np.asarray(proms)


def activation_peaks(fmap2d: np.ndarray, prominence: float = PEAK_PROMINENCE) -> int:
    """Number of peaks of one map whose prominence is >= ``prominence`` x the map's range
    (and > 0: a plateau is one peak), 8-connected; a dead (constant) map has 0 peaks."""
    _, proms = peak_prominences(fmap2d)
    return int(((proms > 0) & (proms >= prominence)).sum())


def activation_robustness(fmaps: np.ndarray, prominence: float = PEAK_PROMINENCE) -> float:
    """Mean number of activation peaks per channel map over (I, C, n, n) or (C, n, n) maps,
    counting only maps that fire (non-constant); 1.0 is the ideal of one part per channel."""
    return peak_counts(fmaps, (prominence,))[_thr_key(prominence)]["all"]


def _thr_key(t: float) -> str:
    return f"{t:g}"


def peak_counts(fmaps: np.ndarray, thresholds: Sequence[float] = PEAK_THRESHOLDS
                ) -> Dict[str, Dict[str, float]]:
    """Mean peaks per firing map at each prominence threshold, split by where the summit is:
    {"0.1": {"all": 2.1, "ring": 1.2, "interior": 0.9}, ...} (ring + interior = all); keys are
    the thresholds as "%g". Over (I, C, n, n) or (C, n, n) maps; constant maps are left out."""
    x = np.asarray(fmaps, dtype=np.float64)
    n = x.shape[-1]
    ring = outer_ring(n).ravel()
    x = x.reshape(-1, x.shape[-2], n)
    per_map = [peak_prominences(m) for m in x]
    fired = [(c, p) for c, p in per_map if len(p)]
    out = {}
    for t in thresholds:
        if not fired:
            out[_thr_key(t)] = {"all": 0.0, "ring": 0.0, "interior": 0.0}
            continue
        on_ring = [int(ring[c[(p > 0) & (p >= t)]].sum()) for c, p in fired]
        total = [int(((p > 0) & (p >= t)).sum()) for c, p in fired]
        out[_thr_key(t)] = {"all": float(np.mean(total)), "ring": float(np.mean(on_ring)),
                            "interior": float(np.mean(total) - np.mean(on_ring))}
    return out


def location_instability(fmaps: np.ndarray, landmarks: np.ndarray, image_size: Sequence[int]
                         ) -> float:
    """ICNN's location instability (Zhang, Wu, Zhu, CVPR 2018), an extra beside the paper's
    metrics: for channel f and landmark k, d_fk(I) = ||p_f(I) - p_k(I)|| / image diagonal, where
    p_f is the centre of the channel's strongest cell in image coordinates; instability_f =
    mean_k std_I d_fk(I); the result is the mean over channels (lower = more stable). Images in
    which a channel is constant (does not fire) are left out for that channel.

    fmaps (I, C, n, n); landmarks (I, K, 2) as (x, y) in the same image frame; image_size (H, W).
    """
    fm = np.asarray(fmaps, dtype=np.float64)
    lm = np.asarray(landmarks, dtype=np.float64)
    n_img, n_ch, n, n2 = fm.shape
    hgt, wid = image_size
    diag = float(np.hypot(hgt, wid))
    flat = fm.reshape(n_img, n_ch, -1)
    arg = flat.argmax(-1)
    fires = flat.max(-1) > flat.min(-1)
    py = (arg // n2 + 0.5) * hgt / n
    px = (arg % n2 + 0.5) * wid / n2
    values = []
    for f in range(n_ch):
        sel = fires[:, f]
        if sel.sum() < 2:
            continue
        d = np.hypot(px[sel, f][:, None] - lm[sel, :, 0], py[sel, f][:, None] - lm[sel, :, 1])
        values.append(float((d / diag).std(0).mean()))
    return float(np.mean(values)) if values else float("nan")
