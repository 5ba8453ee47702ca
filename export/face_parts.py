"""Where a face's parts are, on any face the runtime sees (torch-free).

    locator = FaceLocator("out/detector")        # or FaceLocator(None): crop prior only
    face = locator.locate(image)                  # FaceLandmarks: 68 points + where they came from
    masks = face.part_masks(size=112)             # (7, 112, 112) bool, export.part_masks order

The 68 points come, in this order of preference, from
  given     landmarks the caller passes (68 x 2 array, or an iBUG .pts / LaPa file), in the
            image's pixel coordinates;
  detected  the runtime's MTCNN (export.detector): the largest face's 5 points, with the mean
            68-point shape fitted to them by a similarity transform (export.face_shape);
  crop      no face found (or no detector in the export): the image is taken to be a zoo-style
            face crop, and the mean shape is fitted to where the 5 points lie on average in such
            a crop (export.face_shape.crop_default_points5).
Per-face channel labels (channel_part_ious, channel_labels) say which part each channel's
top-10% region covers on THIS face.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image

from .crop import largest_detected
from .detector import open_detector
from .face_shape import crop_default_points5, fit_shape_to_points5
from .part_masks import PART_NAMES, lapa106_to_68, part_masks_from_landmarks

__all__ = ["PART_IOU_FLOOR", "LANDMARK_SOURCES", "FaceLandmarks", "FaceLocator",
           "read_pts", "read_lapa_106", "read_landmarks", "channel_part_ious",
           "channel_labels"]

# A channel's top-10% region that covers less than this IoU of every part lands on no part: a
# region that holds a whole nose or mouth mask has an IoU of about 0.2-0.3; 0.05 means at most a
# sliver of a part (docs/paper-notes.md). zoo.metrics.explainability uses the same floor.
PART_IOU_FLOOR = 0.05
LANDMARK_SOURCES = ("given", "detected", "crop")


@dataclass
class FaceLandmarks:
    points: np.ndarray        # (68, 2) float64 (x, y) in the image's pixel coordinates
    source: str               # one of LANDMARK_SOURCES
    image_size: Tuple[int, int]  # (width, height) of the image the points belong to
    faces_found: int = 0      # faces the detector found (0 for given / crop)

    def resized(self, size: int) -> np.ndarray:
        """The points after the runtime's square resize to size x size (pixel centres at
        integers: x' = (x + 0.5) * size / W - 0.5)."""
        w, h = self.image_size
        p = self.points
        return np.stack([(p[:, 0] + 0.5) * size / w - 0.5, (p[:, 1] + 0.5) * size / h - 0.5], 1)

    def part_masks(self, size: int) -> np.ndarray:
        """(7, size, size) bool part masks of this face as the network sees it."""
        return part_masks_from_landmarks(self.resized(size), size, size)


def read_pts(path) -> np.ndarray:
    """Read an iBUG .pts file (300-W, AFW, Helen, LFPW, iBUG): (n_points, 2) float32 (x, y).

    Coordinates are returned as stored (the 300-W files use Matlab's 1-based pixel convention;
    subtract 1 for 0-based pixel centres).
    """
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    n, start = None, None
    for k, ln in enumerate(lines):
        if ln.lower().startswith("n_points"):
            try:
                n = int(ln.split(":")[1])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{k + 1}: bad n_points line {ln!r}") from None
        elif ln == "{":
            start = k + 1
            break
    if n is None or start is None:
        raise ValueError(f"{path}: not an iBUG .pts file (needs 'n_points: N' and '{{')")
    pts = []
    for k in range(start, len(lines)):
        if lines[k] == "}":
            break
        try:
            x, y = (float(v) for v in lines[k].split())
        except ValueError:
            raise ValueError(f"{path}:{k + 1}: expected 'x y', got {lines[k]!r}") from None
        pts.append((x, y))
    else:
        raise ValueError(f"{path}: missing closing '}}'")
    if len(pts) != n:
        raise ValueError(f"{path}: n_points says {n} but {len(pts)} points are listed")
    return np.asarray(pts, dtype=np.float32)


def read_lapa_106(path) -> np.ndarray:
    """Read a LaPa landmark .txt (first line 106, then 106 lines 'x y'): (106, 2) float32."""
    path = Path(path)
    rows = [ln.split() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if not rows or len(rows[0]) != 1 or not rows[0][0].isdigit():
        raise ValueError(f"{path}: a LaPa landmark file starts with the point count (106)")
    n = int(rows[0][0])
    if n != 106 or len(rows) - 1 != n:
        raise ValueError(f"{path}: expected 106 points, header says {n}, "
                         f"{len(rows) - 1} lines follow")
    try:
        pts = np.asarray([[float(v) for v in r] for r in rows[1:]], dtype=np.float32)
    except ValueError:
        raise ValueError(f"{path}: landmark lines must be 'x y'") from None
    if pts.shape != (106, 2):
        raise ValueError(f"{path}: every landmark line needs exactly 2 numbers")
    return pts


def read_landmarks(src: Union[str, os.PathLike, np.ndarray]) -> np.ndarray:
    """(68, 2) float64 landmarks from an array or a file: an iBUG .pts (1-based, as 300-W
    ships them; converted to 0-based pixel centres; read_pts), a LaPa file (its point count,
    then 106 lines; read_lapa_106) or a text file of 68 'x y' lines (0-based). ValueError
    naming the file otherwise."""
    if not isinstance(src, (str, os.PathLike)):
        pts = np.asarray(src, dtype=np.float64)
        name = "landmarks"
    else:
        path = Path(src)
        name = str(path)
        try:
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()
                     if ln.strip()]
        except OSError as exc:
            raise ValueError(f"{path}: cannot read landmarks ({exc.strerror or exc})") from None
        if any(ln.lower().startswith("n_points") for ln in lines):
            pts = read_pts(path).astype(np.float64) - 1.0
        elif lines and lines[0].isdigit():
            pts = read_lapa_106(path).astype(np.float64)
        else:
            try:
                pts = np.asarray([[float(v) for v in ln.split()] for ln in lines], np.float64)
            except ValueError:
                raise ValueError(f"{path}: landmark lines must be 'x y' numbers") from None
            if pts.ndim != 2 or pts.shape[1:] != (2,):
                raise ValueError(f"{path}: every landmark line needs exactly 2 numbers")
    if pts.shape == (106, 2):
        pts = lapa106_to_68(pts).astype(np.float64)
    if pts.shape != (68, 2) or not np.isfinite(pts).all():
        raise ValueError(f"{name}: expected 68 (or LaPa 106) finite (x, y) landmarks, got "
                         f"{pts.shape}")
    return pts


class FaceLocator:
    """Landmarks for the runtime's part masks. detector_dir: a folder with the MTCNN ONNX files
    (an export's ``detector/``); None or a missing folder: every face falls back to the crop
    prior unless landmarks are given."""

    def __init__(self, detector_dir: Optional[Union[str, os.PathLike]] = None,
                 threads: Optional[int] = None):
        self.detector = None
        if detector_dir is not None and Path(detector_dir).is_dir():
            self.detector = open_detector(detector_dir, threads=threads)

    def locate(self, image: Image.Image,
               landmarks: Optional[Union[str, os.PathLike, np.ndarray]] = None
               ) -> FaceLandmarks:
        size = (image.width, image.height)
        if landmarks is not None:
            return FaceLandmarks(read_landmarks(landmarks), "given", size)
        if self.detector is not None:
            faces = self.detector.detect(image)
            if faces:
                best = largest_detected(faces)
                return FaceLandmarks(fit_shape_to_points5(best.points), "detected", size,
                                     faces_found=len(faces))
        # a zoo-style crop: the 5 points where they lie on average in such a crop, stretched to
        # the image's aspect (the runtime resizes without keeping it)
        side = float(max(size))
        p5 = crop_default_points5(side)
        p5 = np.stack([(p5[:, 0] + 0.5) * size[0] / side - 0.5,
                       (p5[:, 1] + 0.5) * size[1] / side - 0.5], 1)
        return FaceLandmarks(fit_shape_to_points5(p5), "crop", size)


def channel_part_ious(masks: np.ndarray, part_masks: np.ndarray) -> np.ndarray:
    """(C, P) IoU of each channel's top-10% mask (C, S, S) with each part mask (P, S, S)."""
    m = np.asarray(masks, dtype=bool).reshape(len(masks), -1).astype(np.float32)
    p = np.asarray(part_masks, dtype=bool).reshape(len(part_masks), -1).astype(np.float32)
    inter = m @ p.T
    union = m.sum(1, keepdims=True) + p.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def channel_labels(masks: np.ndarray, part_masks: np.ndarray,
                   floor: float = PART_IOU_FLOOR) -> Tuple[list, np.ndarray]:
    """Each channel's part name on this face (None below the IoU floor) and its best IoU."""
    iou = channel_part_ious(masks, part_masks)
    best = iou.max(1)
    names = [PART_NAMES[k] if b >= floor else None for k, b in zip(iou.argmax(1), best)]
    return names, best
