"""The paper's explainability metrics, one function per term.

Inputs are target-layer maps of one image, (C, n, n), and part masks at input size, (P, S, S)
(zoo.parts.PART_NAMES order). Every metric treats channels independently, so all are invariant to
the order of the channels.

* ``top10_activation``          Eq. 8-9: bilinear upsample to the input size, keep the top 10%.
* ``part_iou``                  Eq. 10: IoU of each channel's top-10% region with each part mask.
* ``part_explainability``       PE: mean over channels of the max-over-parts IoU, mean over images.
* ``location_consistency``      A_{i,k} (how often channel i's best part is k) and
                                S_i = max_k A_{i,k} / sum_k A_{i,k}; LS = mean_i S_i.
* ``activation_peaks`` /
  ``activation_robustness``     number of peaks of a map by topographic prominence; mean count.
* ``location_instability``      ICNN's measure (Zhang et al., CVPR 2018), an extra.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TOP_FRACTION", "PEAK_PROMINENCE", "top10_activation", "upsample_maps", "part_iou",
           "best_parts", "part_explainability", "location_consistency", "activation_peaks",
           "activation_robustness", "location_instability"]

TOP_FRACTION = 0.10      # paper: the top 10% of the upsampled activation
PEAK_PROMINENCE = 0.10   # a peak counts when its prominence >= 10% of the map's range


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
    so a channel can keep slightly more than 10%; a constant map (e.g. a dead, all-zero channel)
    keeps nothing, since no pixel stands out."""
    up = upsample_maps(fmap, size)
    c = up.shape[0]
    flat = up.reshape(c, -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    threshold = torch.topk(flat, k, dim=1).values[:, -1:]               # k-th largest per channel
    keep = flat >= threshold
    constant = (flat.max(1).values == flat.min(1).values)[:, None]
    keep &= ~constant
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


def best_parts(iou: np.ndarray) -> np.ndarray:
    """Each channel's best part (argmax IoU), or -1 where it overlaps no part at all."""
    iou = np.asarray(iou)
    best = iou.argmax(-1)
    return np.where(iou.max(-1) > 0, best, -1)


def part_explainability(ious: np.ndarray) -> float:
    """PE: for each image, the mean over channels of max_k IoU(channel, part k); averaged over
    images. ``ious`` is (I, C, P) or (C, P) for one image."""
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim == 2:
        ious = ious[None]
    return float(ious.max(-1).mean(-1).mean())


def location_consistency(ious: np.ndarray, num_parts: Optional[int] = None) -> Dict[str, object]:
    """Location consistency from (I, C, P) IoUs over I images.

    A[i, k] = number of images whose best part for channel i is k (images where channel i
    overlaps no part are not counted); S_i = max_k A[i, k] / sum_k A[i, k] (the share of the
    channel's most frequent part; channels never overlapping a part have S_i = 0);
    LS = mean_i S_i. Returns {"A", "S", "LS", "dominant_part"}.
    """
    ious = np.asarray(ious)
    if ious.ndim != 3:
        raise ValueError(f"expected IoUs (images, channels, parts), got {ious.shape}")
    p = num_parts or ious.shape[2]
    best = best_parts(ious)                                          # (I, C)
    counts = np.zeros((ious.shape[1], p), dtype=np.int64)
    for k in range(p):
        counts[:, k] = (best == k).sum(0)
    total = counts.sum(1)
    s = np.divide(counts.max(1), total, out=np.zeros(len(total)), where=total > 0)
    dominant = np.where(total > 0, counts.argmax(1), -1)
    return {"A": counts, "S": s, "LS": float(s.mean()), "dominant_part": dominant}


def activation_peaks(fmap2d: np.ndarray, prominence: float = PEAK_PROMINENCE) -> int:
    """Number of peaks of one map whose topographic prominence is >= ``prominence`` x the map's
    range (max - min), 8-connected. A dead (constant) map has 0 peaks.

    Prominence by the contour (0-dim persistence) method: visit pixels from high to low; a pixel
    joins the regions of its visited neighbours; when two regions meet at height h, the one with
    the lower summit ends with prominence (summit - h). The highest summit's prominence is the
    map's range.
    """
    m = np.asarray(fmap2d, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {m.shape}")
    lo, hi = float(m.min()), float(m.max())
    if hi - lo <= 0:
        return 0
    h, w = m.shape
    flat = m.ravel()
    order = np.argsort(-flat, kind="stable")
    parent = np.full(flat.size, -1, dtype=np.int64)
    summit = np.zeros(flat.size)

    def find(a):
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:          # path compression
            parent[a], a = root, parent[a]
        return root

    min_prom = prominence * (hi - lo)
    count = 0
    for idx in order:
        parent[idx] = idx
        summit[idx] = flat[idx]
        r, c = divmod(int(idx), w)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if (dr or dc) and 0 <= rr < h and 0 <= cc < w and parent[rr * w + cc] >= 0:
                    a, b = find(idx), find(rr * w + cc)
                    if a == b:
                        continue
                    low, high = (a, b) if summit[a] < summit[b] else (b, a)
                    if low != idx and summit[low] - flat[idx] >= min_prom:
                        count += 1                     # the lower region's summit ends here
                    parent[low] = high
    return count + 1                                   # the global summit (prominence = range)


def activation_robustness(fmaps: np.ndarray, prominence: float = PEAK_PROMINENCE) -> float:
    """Mean number of activation peaks per channel map over (I, C, n, n) or (C, n, n) maps,
    counting only maps that fire (non-constant); 1.0 is the ideal of one part per channel."""
    x = np.asarray(fmaps, dtype=np.float64)
    x = x.reshape(-1, x.shape[-2], x.shape[-1])
    counts = [activation_peaks(m, prominence) for m in x]
    fired = [c for c in counts if c > 0]
    return float(np.mean(fired)) if fired else 0.0


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
