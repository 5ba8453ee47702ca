"""A mean 68-point face shape and its fit to the 5 MTCNN points (torch-free: numpy only).

    pts68 = fit_shape_to_points5(points5)          # (68, 2) in the 5 points' pixel frame
    pts68 = fit_shape_to_points5(crop_default_points5(112))   # no face found on a 112 px crop

The runtime finds 5 points per face (MTCNN: left eye, right eye, nose tip, left and right mouth
corner; "left" = image left), but the part masks (export.part_masks) are drawn from 68 iBUG
points. ``fit_shape_to_points5`` places the mean shape on the face by the least-squares
similarity transform (rotation, uniform scale, translation; never a reflection) that takes the
mean shape's own 5 points (``POINTS5_FROM_68``) to the detected ones.

The mean shape and the crop prior live in export/data/mean_shape_68.json, written by
``python tools/make_mean_shape.py`` (which says how: generalised Procrustes over the dlib
landmarks of the ORL training identities; MTCNN on the same images for the crop prior). How
well the fitted masks agree with masks from annotated 68 points is measured by
research/mask_agreement.py (docs/data.md).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

# MEAN_SHAPE_68 is defined by the module's __getattr__ (read from the file on first use)
__all__ = ["MEAN_SHAPE_FILE", "MEAN_SHAPE_68", "POINTS5_NAMES", "POINTS5_FROM_68",  # noqa: F822
           "points5_from_68", "similarity_transform", "apply_similarity", "fit_shape_to_points5",
           "crop_default_points5"]

MEAN_SHAPE_FILE = Path(__file__).with_name("data") / "mean_shape_68.json"
# facenet-pytorch's order of MTCNN's 5 points; "left" is the image's left
POINTS5_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# iBUG-68 indices averaged for each of the 5 points: the eye centres are the means of the six
# eye-contour points, the nose tip is point 30, the mouth corners are the outer-lip corners
POINTS5_FROM_68 = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))
# Below this distance (pixels) between the two eyes no scale or rotation can be fitted.
MIN_EYE_DISTANCE = 1e-6


def points5_from_68(pts68) -> np.ndarray:
    """(5, 2) float64: the MTCNN-point equivalents (POINTS5_NAMES order) of a (68, 2) shape."""
    pts = np.asarray(pts68, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected a (68, 2) shape, got {pts.shape}")
    return np.stack([pts[list(idx)].mean(0) for idx in POINTS5_FROM_68])


def similarity_transform(src, dst):
    """(scale, rotation (2, 2), translation (2,)) minimising sum ||scale R src_i + t - dst_i||^2
    over rotations R (det +1: no reflection), for (n, 2) point sets (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = (src_c ** 2).sum() / len(src)
    if var_src <= 0:
        raise ValueError("the source points coincide: no similarity transform is defined")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])  # -1: a reflection
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / var_src)
    translation = mu_dst - scale * rotation @ mu_src
    return scale, rotation, translation


def apply_similarity(pts, scale, rotation, translation) -> np.ndarray:
    """scale * R p + t for each row p of ``pts``."""
    return scale * np.asarray(pts, dtype=np.float64) @ np.asarray(rotation).T + translation


@functools.lru_cache(maxsize=1)
def _mean_shape_record():
    """(mean shape (68, 2), crop prior (5, 2) in crop-side units), read-only, from the file."""
    try:
        record = json.loads(MEAN_SHAPE_FILE.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{MEAN_SHAPE_FILE}: the mean face shape ships with the package (regenerate it "
            "with `python tools/make_mean_shape.py` from a source checkout)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{MEAN_SHAPE_FILE}: not valid JSON ({exc})") from None
    shape = np.asarray(record.get("mean_shape_68"), dtype=np.float64)
    crop5 = np.asarray(record.get("crop_points5_unit"), dtype=np.float64)
    if shape.shape != (68, 2) or not np.isfinite(shape).all():
        raise ValueError(f"{MEAN_SHAPE_FILE}: 'mean_shape_68' must be 68 finite (x, y) points")
    if crop5.shape != (5, 2) or not np.isfinite(crop5).all():
        raise ValueError(f"{MEAN_SHAPE_FILE}: 'crop_points5_unit' must be 5 finite (x, y) points")
    shape.setflags(write=False)
    crop5.setflags(write=False)
    return shape, crop5


def __getattr__(name):
    # MEAN_SHAPE_68 is read on first use, so that tools/make_mean_shape.py can import this
    # module's transforms before the file it writes exists
    if name == "MEAN_SHAPE_68":
        return _mean_shape_record()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_points5(points5) -> np.ndarray:
    pts = np.asarray(points5, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected 5 (x, y) points (left eye, right eye, nose, mouth left, "
                         f"mouth right), got an array of shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"the 5 points must be finite, got {pts.tolist()}")
    if np.linalg.norm(pts[1] - pts[0]) < MIN_EYE_DISTANCE:
        raise ValueError(f"the two eye points coincide ({pts[0].tolist()}): no face scale or "
                         "rotation can be fitted")
    return pts


@functools.lru_cache(maxsize=1)
def _regression():
    """(canonical 5 points, mean_x, mean_y, W) of the 5 -> 68 point regression, or None when
    the file has none (then the rigid mean shape is placed)."""
    record = json.loads(MEAN_SHAPE_FILE.read_text()).get("points5_regression")
    if record is None:
        return None
    canon = np.asarray(record["canonical_points5"], np.float64)
    mx, my = np.asarray(record["mean_x"], np.float64), np.asarray(record["mean_y"], np.float64)
    w = np.asarray(record["W"], np.float64)
    if (canon.shape != (5, 2) or mx.shape != (10,) or my.shape != (136,)
            or w.shape != (10, 136) or not all(np.isfinite(a).all() for a in (canon, mx, my, w))):
        raise ValueError(f"{MEAN_SHAPE_FILE}: 'points5_regression' has the wrong shapes")
    return canon, mx, my, w


def fit_shape_to_points5(points5, regression: bool = True) -> np.ndarray:
    """(68, 2) float64 landmarks of a face from its 5 MTCNN points ((5, 2), POINTS5_NAMES order).

    regression=True (and the data file has one): the face is moved into the canonical frame of
    its 5 points by a similarity transform, the 68 points are predicted there by the linear
    regression of tools/make_shape_regression.py (learnt on MTCNN points and 68-point landmarks
    of ORL training faces: it corrects MTCNN's offsets from the 68-point scheme and follows the
    face's proportions), and moved back. Otherwise, or without one: the mean shape placed by the
    least-squares similarity transform (no reflection) from its own 5 points to ``points5``."""
    pts = _check_points5(points5)
    model = _regression() if regression else None
    if model is None:
        mean_shape = _mean_shape_record()[0]
        transform = similarity_transform(points5_from_68(mean_shape), pts)
        return apply_similarity(mean_shape, *transform)
    canon, mx, my, w = model
    to_canon = similarity_transform(pts, canon)
    x = apply_similarity(pts, *to_canon).ravel()
    y = (my + (x - mx) @ w).reshape(68, 2)
    return apply_similarity(y, *similarity_transform(canon, pts))


def crop_default_points5(size) -> np.ndarray:
    """(5, 2) float64: where the 5 points lie on average in a zoo-style face crop (square box of
    side max(w, h) * 1.2 around the MTCNN box centre, as export.crop / zoo.prep cut it) resized
    to ``size`` x ``size``, in its pixel coordinates (centres at integers). The fallback when
    no face is found on a crop."""
    size = float(size)
    if not np.isfinite(size) or size <= 0:
        raise ValueError(f"crop size must be a positive number, got {size}")
    return _mean_shape_record()[1] * size - 0.5
