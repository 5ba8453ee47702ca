"""The part-swap game: does an explanation blame the face part that was actually changed?

This is the "inpainting game" of Williford, May and Byrne, "Explainable Face Recognition",
ECCV 2020, played with whole face parts. There a region of a probe face is inpainted so that
the probe no longer matches its mate, and a saliency map is scored by whether it lights up the
inpainted region. Here face A gets one part (eyes with brows, nose or mouth) of another person
B pasted in, aligned by the 68 landmarks: A' = swap_part(A, B, part). A model's explanation of
A vs A' then names the part it holds responsible; the game's score is the share of swaps in
which that is the swapped part, counted only over swaps that moved the model's similarity
enough to need an explanation.

Geometry (iBUG 68-point landmarks, (x, y) in pixels, 0-based pixel centres):

- SWAP_PARTS = ("eyes", "nose", "mouth"); the landmarks of each part:
  eyes = both eyebrows and both eyes, 17-26 and 36-47, drawn as two convex hulls, one per side
  (17-21 + 36-41 and 22-26 + 42-47) so that the bridge of the nose between them stays A's;
  nose = 27-35 (bridge and base, one hull); mouth = 48-67 (outer and inner lip, one hull).
- iod, the inter-ocular distance of A: the distance between the eye centres, the means of
  36-41 and 42-47. Every length below is relative to it, so the rule holds at any image size.
- B is aligned to A by the least-squares similarity (rotation, uniform scale, translation, no
  reflection; Umeyama 1991) from all 68 of B's landmarks to A's, and resampled into A's frame
  with PIL's bilinear AFFINE transform.
- The mask is the hull(s) of the part's landmarks on A, dilated by DILATE = 0.05 iod, then
  feathered by a Gaussian blur of sigma FEATHER = 0.03 iod (PIL GaussianBlur on an 8-bit mask,
  so alpha comes in steps of 1/255). The blur puts alpha = 0.5 on the dilated edge; on the
  hull itself, 0.05 / 0.03 = 1.7 sigma inside, alpha is about 0.95 (down to about 0.83 at the
  hull's sharp corners), so the part is B's while the seam is spread over about 0.1 iod.
  Where the warped B has no pixels (its frame does not cover the spot) alpha is set to 0, so A
  shows rather than black.
- A' = (1 - alpha) A + alpha B_warped, rounded to 8 bits; where alpha is 0, A' is A exactly.

Scoring (independent of any model): one row per swap with its ``part``, ``change`` (1 - the
model's similarity of A and A') and ``ranked_first`` (whether the explanation put the swapped
part first, :func:`swapped_part_first`). :func:`swap_game_score` counts the rows with change >=
MIN_CHANGE = 0.02 (a swap the model barely noticed needs no explanation, and its ranking is
noise) and reports the share ranked first, overall and per part. A part tied for first with
another is not ranked first: an explanation that cannot tell them apart has not found it.

Pairs: :func:`orl_swap_pairs` draws ordered pairs (A, B) of different ORL identities with a
seeded numpy generator, so every model plays the same swaps.

The module imports only numpy and Pillow, so the game needs no model framework. Importing it
as zoo.metrics.faithfulness still loads torch, because the zoo package's __init__ does.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFilter

from export.part_masks import convex_hull, polygon_region

__all__ = [
    "SWAP_PARTS", "PART_HULLS", "PART_LANDMARKS", "DILATE", "FEATHER", "MIN_CHANGE",
    "SwapResult", "similarity_transform", "apply_transform", "inter_ocular_distance",
    "part_mask", "swap_part", "swapped_part_first", "swap_game_score", "orl_swap_pairs",
]

SWAP_PARTS = ("eyes", "nose", "mouth")
# Each part is drawn as the union of the convex hulls of these landmark index groups.
PART_HULLS: Dict[str, Tuple[Tuple[int, ...], ...]] = {
    "eyes": (tuple(range(17, 22)) + tuple(range(36, 42)),
             tuple(range(22, 27)) + tuple(range(42, 48))),
    "nose": (tuple(range(27, 36)),),
    "mouth": (tuple(range(48, 68)),),
}
PART_LANDMARKS: Dict[str, Tuple[int, ...]] = {
    part: tuple(sorted(i for group in groups for i in group)) for part, groups in PART_HULLS.items()
}
DILATE = 0.05      # x iod: how far the mask reaches beyond the part's hull
FEATHER = 0.03     # x iod: sigma of the Gaussian that softens the mask's edge
MIN_CHANGE = 0.02  # 1 - similarity below this: the swap did not matter to the model
NUM_LANDMARKS = 68
_LEFT_EYE, _RIGHT_EYE = slice(36, 42), slice(42, 48)


@dataclass(frozen=True)
class SwapResult:
    """A' (PIL RGB, A's size), the alpha mask used to paste B's part ((H, W) float32 in
    [0, 1]), the part swapped, and the 2 x 3 similarity that maps B's pixel coordinates to A's."""
    image: Image.Image
    mask: np.ndarray
    part: str
    transform_b_to_a: np.ndarray


# ----------------------------------------------------------------------------------- geometry

def _points(pts, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(pts, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or (n is not None and arr.shape[0] != n):
        want = f"({n}, 2)" if n is not None else "(n, 2)"
        raise ValueError(f"{name}: expected {want} landmarks (x, y), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: landmarks must be finite")
    return arr


def similarity_transform(src_pts, dst_pts) -> np.ndarray:
    """Least-squares similarity from ``src_pts`` to ``dst_pts``: 2 x 3 float64 matrix M.

    dst ~ M[:, :2] @ src + M[:, 2] with M[:, :2] = s R, R a rotation (det +1: no reflection),
    minimising the summed squared distance (Umeyama, "Least-squares estimation of
    transformation parameters between two point patterns", TPAMI 1991). Both are (n, 2) with
    n >= 2 and the source points not all equal.
    """
    src = _points(src_pts, "src_pts")
    dst = _points(dst_pts, "dst_pts")
    if src.shape != dst.shape:
        raise ValueError(f"src_pts {src.shape} and dst_pts {dst.shape} must have the same shape")
    if len(src) < 2:
        raise ValueError(f"a similarity needs at least 2 point pairs, got {len(src)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = float((s0 ** 2).sum()) / len(src)
    if var_s <= 1e-12:
        raise ValueError("src_pts are all the same point: no similarity is defined")
    cov = d0.T @ s0 / len(src)
    u, sing, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best fit would reflect: forbid it
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = float((sing * sign).sum()) / var_s
    lin = scale * rot
    return np.concatenate([lin, (mu_d - lin @ mu_s)[:, None]], axis=1)


def apply_transform(matrix, pts) -> np.ndarray:
    """(n, 2) points mapped by a 2 x 3 affine matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"expected a 2 x 3 matrix, got shape {m.shape}")
    p = _points(pts, "pts")
    return p @ m[:, :2].T + m[:, 2]


def inter_ocular_distance(pts) -> float:
    """Distance between the eye centres (means of landmarks 36-41 and 42-47)."""
    p = _points(pts, "landmarks", NUM_LANDMARKS)
    return float(np.linalg.norm(p[_RIGHT_EYE].mean(0) - p[_LEFT_EYE].mean(0)))


def _check_part(part) -> str:
    if part not in PART_HULLS:
        raise ValueError(f"unknown part {part!r}: the part-swap game swaps one of {SWAP_PARTS}")
    return part


def part_mask(pts, part: str, height: int, width: int, dilate: float = DILATE,
              feather: float = FEATHER) -> np.ndarray:
    """(height, width) float32 alpha in [0, 1]: the part's hull(s) on these landmarks, dilated
    by ``dilate`` x iod and blurred with sigma ``feather`` x iod (the module's rule)."""
    _check_part(part)
    p = _points(pts, "landmarks", NUM_LANDMARKS)
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise ValueError(f"mask size must be positive, got {h} x {w}")
    for name, v in (("dilate", dilate), ("feather", feather)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0 (x iod), got {v!r}")
    iod = inter_ocular_distance(p)
    if iod < 1e-6:
        raise ValueError("degenerate landmarks: the two eye centres coincide")
    hard = np.zeros((h, w), dtype=bool)
    for group in PART_HULLS[part]:
        # the part masks' own geometry: pixel centres inside the hull or within the radius
        hard |= polygon_region(convex_hull(p[list(group)]), h, w, dilate * iod)
    mask = Image.fromarray(hard.astype(np.uint8) * 255)
    if feather > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(feather * iod))
    return np.asarray(mask, dtype=np.float32) / 255.0


# ---------------------------------------------------------------------------------- the swap

def _rgb(img, name: str) -> np.ndarray:
    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"{name}: an image array must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected a PIL image or an (H, W, 3) / (H, W) uint8 array, "
                         f"got shape {arr.shape}")
    return arr


def _warp(image: np.ndarray, b_to_a: np.ndarray, size_wh: Tuple[int, int]) -> Tuple[np.ndarray,
                                                                                     np.ndarray]:
    """B resampled into A's frame, and the share of each output pixel that B covers.

    PIL's AFFINE data maps an output point to an input point in continuous coordinates, in
    which pixel k spans [k, k + 1] and its centre is k + 0.5; our landmarks put centres at k.
    So the inverse similarity x_b = L x_a + c becomes u_b = L u_a + c + (1 - L) (0.5, 0.5).
    """
    lin, off = b_to_a[:, :2], b_to_a[:, 2]
    inv_lin = np.linalg.inv(lin)
    inv_off = -inv_lin @ off
    inv_off = inv_off + (np.eye(2) - inv_lin) @ np.array([0.5, 0.5])
    data = (inv_lin[0, 0], inv_lin[0, 1], inv_off[0], inv_lin[1, 0], inv_lin[1, 1], inv_off[1])
    src = Image.fromarray(image)
    warped = src.transform(size_wh, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR,
                           fillcolor=(0, 0, 0))
    ones = Image.new("L", src.size, 255)
    cover = ones.transform(size_wh, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR,
                           fillcolor=0)
    return np.asarray(warped, dtype=np.uint8), np.asarray(cover, dtype=np.float32) / 255.0


def swap_part(img_a, pts_a, img_b, pts_b, part: str, dilate: float = DILATE,
              feather: float = FEATHER) -> SwapResult:
    """A with ``part`` replaced by B's, aligned by the 68 landmarks (the module's rule).

    img_a, img_b: PIL images (converted to RGB) or uint8 (H, W, 3) / (H, W) arrays, of any
    sizes. pts_a, pts_b: (68, 2) iBUG landmarks (x, y) in each image's pixel coordinates,
    0-based pixel centres. dilate and feather are in units of A's inter-ocular distance.
    Returns :class:`SwapResult`: A' as a PIL RGB image of A's size, and the alpha mask.
    """
    _check_part(part)
    a = _rgb(img_a, "img_a")
    b = _rgb(img_b, "img_b")
    pa = _points(pts_a, "pts_a", NUM_LANDMARKS)
    pb = _points(pts_b, "pts_b", NUM_LANDMARKS)
    h, w = a.shape[:2]
    b_to_a = similarity_transform(pb, pa)
    if abs(np.linalg.det(b_to_a[:, :2])) < 1e-12:
        raise ValueError("pts_b cannot be aligned to pts_a (the fitted similarity has scale 0)")
    alpha = part_mask(pa, part, h, w, dilate, feather)
    warped, cover = _warp(b, b_to_a, (w, h))
    # Where B's frame ends (cover < 1), fall back to A rather than paste black.
    alpha = np.where(cover >= 1.0, alpha, 0.0).astype(np.float32)
    out = a.copy()
    blend = alpha > 0
    al = alpha[blend][:, None]
    mixed = a[blend].astype(np.float64) * (1.0 - al) + warped[blend].astype(np.float64) * al
    out[blend] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return SwapResult(Image.fromarray(out), alpha, part, b_to_a)


# ------------------------------------------------------------------------------------ scoring

def swapped_part_first(differences: Mapping[str, float], part: str) -> bool:
    """Whether ``part`` alone has the largest value in ``differences``.

    differences: an explanation's score per face part (any part names: an explanation may blame
    "forehead" or "cheek" for a nose swap). A tie for first is not first (see the module doc).
    """
    if part not in differences:
        raise ValueError(f"the explanation gives no value for the swapped part {part!r} "
                         f"(parts given: {sorted(differences)})")
    values = {}
    for name, v in differences.items():
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"the explanation's value for part {name!r} is not finite: {v}")
        values[name] = v
    mine = values[part]
    return all(mine > v for name, v in values.items() if name != part)


def _tally(rows: Sequence[Mapping]) -> Dict[str, object]:
    n = len(rows)
    first = sum(1 for r in rows if r["ranked_first"])
    return {"score": first / n if n else None, "n_counted": n, "n_first": first}


def swap_game_score(rows: Iterable[Mapping], min_change: float = MIN_CHANGE) -> Dict[str, object]:
    """Score the part-swap game: the share of swaps with change >= ``min_change`` whose swapped
    part the explanation ranked first.

    rows: mappings with ``part`` (one of SWAP_PARTS), ``change`` (1 - the model's similarity of
    A and A') and ``ranked_first`` (bool). Returns a dict: ``score`` (None when no row counts),
    ``n_counted``, ``n_first``, ``n_below_min_change`` (rows left out), ``min_change`` and
    ``by_part`` ({part: {score, n_counted, n_first}} for every part in SWAP_PARTS).
    """
    if not (math.isfinite(min_change) and min_change >= 0):
        raise ValueError(f"min_change must be a finite number >= 0, got {min_change!r}")
    counted, below = [], 0
    for k, row in enumerate(rows):
        missing = [key for key in ("part", "change", "ranked_first") if key not in row]
        if missing:
            raise ValueError(f"row {k}: missing {missing} (needs part, change, ranked_first)")
        if row["part"] not in SWAP_PARTS:
            raise ValueError(f"row {k}: part {row['part']!r} is not one of {SWAP_PARTS}")
        change = float(row["change"])
        if not math.isfinite(change):
            raise ValueError(f"row {k}: change is not finite ({row['change']!r})")
        if not isinstance(row["ranked_first"], (bool, np.bool_)):
            raise ValueError(f"row {k}: ranked_first must be a bool, got "
                             f"{type(row['ranked_first']).__name__}")
        if change >= min_change:
            counted.append(row)
        else:
            below += 1
    result = _tally(counted)
    result["n_below_min_change"] = below
    result["min_change"] = float(min_change)
    result["by_part"] = {p: _tally([r for r in counted if r["part"] == p]) for p in SWAP_PARTS}
    return result


# -------------------------------------------------------------------------------------- pairs

_ORL_KEY = re.compile(r"^s(\d+)/(\d+)(?:\.pgm)?$")


def orl_swap_pairs(keys: Sequence[str], seed: int, n_pairs: int) -> List[Tuple[str, str]]:
    """``n_pairs`` distinct ordered pairs (A, B) of ORL keys of different identities.

    keys: ORL image keys "s<identity>/<n>" (with or without ".pgm", as the landmark table
    writes them). The keys are put in (identity, image) order first, so the pairs depend on
    the set of keys and the seed only; they are drawn without replacement by numpy's
    default_rng(seed) from all ordered pairs whose identities differ.
    """
    parsed = []
    for key in keys:
        m = _ORL_KEY.match(str(key))
        if not m:
            raise ValueError(f"{key!r} is not an ORL key like 's12/3' or 's12/3.pgm'")
        parsed.append((int(m.group(1)), int(m.group(2)), str(key)))
    if len({(i, n) for i, n, _ in parsed}) != len(parsed):
        raise ValueError("the ORL keys name the same image more than once")
    parsed.sort()
    n_pairs = int(n_pairs)
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0, got {n_pairs}")
    ids = np.asarray([i for i, _, _ in parsed])
    candidates = np.flatnonzero(ids[:, None] != ids[None, :])
    if n_pairs > len(candidates):
        raise ValueError(f"asked for {n_pairs} pairs, but the {len(parsed)} keys give only "
                         f"{len(candidates)} ordered pairs of different identities")
    chosen = np.random.default_rng(seed).choice(candidates, size=n_pairs, replace=False)
    return [(parsed[c // len(parsed)][2], parsed[c % len(parsed)][2]) for c in chosen]
