"""The training crop rule, and the runtime's face crop (--crop): no torch.

    box = square_crop_box(face_box, margin=0.2)          # the rule zoo.prep crops with
    face = crop_face("photo.jpg", detector="out/")       # MTCNN (export.detector), largest face
    found = find_face("photo.jpg", detector="out/")      # the same, with box, score, face count

The crop is zoo.prep's: the largest MTCNN face, a square box of side max(w, h) * (1 + margin)
around the face box's centre, no alignment, outside the image black; the runtime then resizes
the crop to the model's input size. Detection is export.detector's FaceDetector (facenet-pytorch's
MTCNN exported to ONNX, run by numpy and onnxruntime), whose boxes are those facenet-pytorch's
MTCNN gives zoo.prep, so a photo is cropped the way the model's training faces were.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .detector import DetectedFace, FaceDetector, open_detector
from .images import ImageError, load_image

__all__ = ["DEFAULT_MARGIN", "FaceCrop", "square_crop_box", "pixel_crop_box", "largest_face",
           "largest_detected", "find_face", "crop_face"]

DEFAULT_MARGIN = 0.2  # zoo.prep's default


def square_crop_box(box: Sequence[float], margin: float) -> Tuple[float, float, float, float]:
    """Square box around a face box (x1, y1, x2, y2): side = max(w, h) * (1 + margin), same
    centre.

    Squaring keeps the face's aspect ratio when it is resized to size x size; the margin is the
    total fraction of the side added (0.2 = 10% on each side), as the paper crops "with a
    margin"."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def largest_face(boxes: np.ndarray) -> int:
    """Index of the largest box (by area) among (N, 4+) boxes x1, y1, x2, y2: the face a
    photo is cropped to; the first one when several are equal."""
    boxes = np.asarray(boxes, dtype=np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.argmax(areas))


def largest_detected(faces: Sequence[DetectedFace]) -> DetectedFace:
    """The detected face a photo is cropped to: the largest box (largest_face)."""
    return faces[largest_face(np.stack([f.box for f in faces]))]


def pixel_crop_box(face_box: Sequence[float],
                   margin: float = DEFAULT_MARGIN) -> Tuple[int, int, int, int]:
    """square_crop_box rounded to whole pixels: the box PIL crops (it may overhang)."""
    return tuple(int(round(v)) for v in square_crop_box(face_box, margin))


@dataclass
class FaceCrop:
    image: Image.Image                       # the square crop, RGB, not resized
    crop_box: Tuple[int, int, int, int]      # where it was cut from the source (may overhang)
    face: DetectedFace                       # the face it is cropped around (box, score, points)
    num_faces: int                           # faces found: more than 1 means the largest won


def _detector(detector: Union[FaceDetector, str, os.PathLike, None]) -> FaceDetector:
    if isinstance(detector, FaceDetector):
        return detector
    if detector is None:
        raise ValueError("the face crop needs the detector: pass detector= a FaceDetector or an "
                         "exported model folder (`python -m zoo.exporting` writes its "
                         "detector/)")
    return open_detector(detector)


def find_face(src: Union[str, os.PathLike, Image.Image, np.ndarray],
              margin: float = DEFAULT_MARGIN,
              detector: Union[FaceDetector, str, os.PathLike, None] = None) -> FaceCrop:
    """The square crop of the largest face in ``src`` with what was found.

    detector: a FaceDetector, or a folder with its ONNX files (an exported model folder, whose
    detector/ is used, or that detector/ folder). ImageError naming ``src`` when no face is
    found; DetectorError (a ModelDirError) naming the file when the detector is missing."""
    finder = _detector(detector)
    name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else "image"
    img = load_image(src)
    faces = finder.detect(img)
    if not faces:
        problem = "MTCNN found no face (run without --crop on a face crop)"
        raise ImageError(f"{name}: {problem}", name, problem)
    face = largest_detected(faces)
    box = pixel_crop_box(face.box, margin)
    return FaceCrop(image=img.crop(box), crop_box=box, face=face, num_faces=len(faces))


def crop_face(src: Union[str, os.PathLike, Image.Image, np.ndarray],
              margin: float = DEFAULT_MARGIN,
              detector: Union[FaceDetector, str, os.PathLike, None] = None) -> Image.Image:
    """The square crop (RGB PIL, not resized) of the largest MTCNN face in ``src``; see
    find_face (which also says how many faces there were)."""
    return find_face(src, margin, detector).image
