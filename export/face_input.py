"""What the model is given of a photo: the face found by the export's detector (torch-free).

    prep = FacePreparer("out/", metadata)          # the export's detector/, its alignment
    face = prep.prepare("photo.jpg", crop="auto")  # FaceInput: .image, .used, .note, .landmarks

Detection is the default, as in deepface and insightface. ``crop`` says what happens:

auto    (default) the export's MTCNN (export.detector) looks for faces. No face: the image is
        used as given, with a note. A face whose box's longer side is at least FACE_CROP_SHARE
        of the image's shorter side means the image is already a face crop (ORL's 92 x 112
        faces, zoo.prep's crops): it is used as is, so a model trained on such frames sees what
        it was trained on. Otherwise the largest face is cropped by the training crop rule
        (export.crop: square, margin 0.2, no alignment). Several faces: the largest, with a note.
always  the largest face is cropped (ImageError when there is none): the old ``--crop``.
never   the image is used as given: the old default, for face crops.

An export whose metadata says ``alignment: dlib-5point-150`` (dlib's ResNet) takes aligned
150 x 150 chips: with auto or always every photo goes detector -> 5 points ->
export.align.chip_from_mtcnn_points5 (the face-crop rule does not apply: the network only knows
chips); never means the image is already such a chip.

A FaceInput also carries the detected face's 68 points in its own pixels (the 5 -> 68 point
fit of export.face_shape), which the part masks of the explanations use, and ``view_from_image``,
the 2 x 3 map from the photo's pixels to its own (for landmarks given on the photo).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

from .align import MTCNN_CHIP_TEMPLATE, chip_from_mtcnn_points5, similarity_transform
from .crop import largest_detected, pixel_crop_box
from .detector import DETECTOR_DIR, FaceDetector, open_detector
from .face_shape import fit_shape_to_points5
from .images import ImageError, ImageLike, load_image
from .model_dir import ModelDirError

__all__ = ["CROP_MODES", "ALIGNMENTS", "FACE_CROP_SHARE", "FaceInput", "FacePreparer",
           "check_crop", "is_face_crop"]

CROP_MODES = ("auto", "always", "never")
ALIGNMENTS = ("dlib-5point-150",)
# auto: the largest face's box (MTCNN's, no margin) has a longer side of at least this share of
# the image's shorter side -> the image is a face crop already. ORL's faces give 0.6-0.8, the
# 224 px crops of docs/faces.md about 0.8, a photo of a person 0.1-0.4.
FACE_CROP_SHARE = 0.5


def check_crop(crop: str) -> str:
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
    return crop


def is_face_crop(box: Sequence[float], size: Sequence[int]) -> bool:
    """Whether a face box (x1, y1, x2, y2) in an image of ``size`` (w, h) makes the image a face
    crop already (FACE_CROP_SHARE)."""
    side = max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1]))
    return side >= FACE_CROP_SHARE * min(size)


@dataclass
class FaceInput:
    image: Image.Image                  # what the model is given (before its own resize)
    used: str                           # "as given", "face crop as given", "cropped", "aligned"
    name: str = "image"
    faces_found: Optional[int] = None   # None: no detection ran (crop="never")
    note: Optional[str] = None          # no face / several faces / no detector
    landmarks: Optional[np.ndarray] = None  # (68, 2) of the detected face in ``image``'s pixels
    view_from_image: np.ndarray = field(default_factory=lambda: np.eye(2, 3))

    def to_dict(self) -> Dict[str, object]:
        return {"input": self.name, "used": self.used, "faces_found": self.faces_found,
                "note": self.note}

    def map_points(self, points: np.ndarray) -> np.ndarray:
        """Points (n, 2) in the photo's pixels -> in ``image``'s pixels."""
        p = np.asarray(points, np.float64)
        return p @ self.view_from_image[:, :2].T + self.view_from_image[:, 2]


def _name(src, index: Optional[int]) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return "image" if index is None else f"image #{index}"


def _invert(affine: np.ndarray) -> np.ndarray:
    m = np.vstack([affine, [0.0, 0.0, 1.0]])
    return np.linalg.inv(m)[:2]


class FacePreparer:
    """The face inputs of one export: its detector/ (opened at the first use) and the
    alignment its metadata names (None: face crops resized by the model's preprocessing)."""

    def __init__(self, model_dir: Union[str, os.PathLike], metadata: Dict[str, str],
                 threads: Optional[int] = None):
        self.model_dir = Path(model_dir)
        self.folder = self.model_dir / DETECTOR_DIR
        self.alignment = metadata.get("alignment") or None
        if self.alignment == "none":
            self.alignment = None
        if self.alignment is not None and self.alignment not in ALIGNMENTS:
            raise ModelDirError(f"{model_dir}: metadata alignment {self.alignment!r} is not one "
                                f"this runtime knows ({', '.join(ALIGNMENTS)}): update the "
                                "runtime")
        self.threads = threads

    @property
    def has_detector(self) -> bool:
        return self.folder.is_dir()

    def detector(self) -> FaceDetector:
        """The export's detector (open_detector keeps one per folder and thread count, so the
        explainers' part locator and this share it)."""
        return open_detector(self.model_dir, threads=self.threads)

    def prepare(self, src: Union[ImageLike, FaceInput], crop: str = "auto",
                index: Optional[int] = None) -> FaceInput:
        """The FaceInput of one image (a FaceInput is returned as it is)."""
        check_crop(crop)
        if isinstance(src, FaceInput):
            return src
        name = _name(src, index)
        img = load_image(src, index)
        if crop == "never":
            return FaceInput(img, "as given", name)
        if crop == "auto" and not self.has_detector:
            return FaceInput(img, "as given", name, note=f"this export has no {DETECTOR_DIR}/ "
                             "(no face detection): the image was used as given")
        faces = self.detector().detect(img)
        if not faces:
            if crop == "always":
                problem = "the face detector found no face (use --no-crop for a face crop)"
                raise ImageError(f"{name}: {problem}", name, problem)
            return FaceInput(img, "as given", name, 0,
                             "no face found: the whole image was used as given")
        face = largest_detected(faces)
        note = f"{len(faces)} faces found: used the largest" if len(faces) > 1 else None
        if self.alignment is not None:
            chip = Image.fromarray(chip_from_mtcnn_points5(img, face.points))
            view = _invert(similarity_transform(MTCNN_CHIP_TEMPLATE, face.points))
            used, out = "aligned", chip
        elif crop == "auto" and is_face_crop(face.box, img.size):
            view, used, out = np.eye(2, 3), "face crop as given", img
        else:
            box = pixel_crop_box(face.box)
            view = np.array([[1.0, 0.0, -box[0]], [0.0, 1.0, -box[1]]])
            used, out = "cropped", img.crop(box)
        result = FaceInput(out, used, name, len(faces), note, view_from_image=view)
        result.landmarks = fit_shape_to_points5(result.map_points(face.points))
        return result

    def prepare_all(self, images: Sequence[Union[ImageLike, FaceInput]], crop: str = "auto",
                    first_index: int = 0) -> List[FaceInput]:
        return [self.prepare(im, crop, first_index + i) for i, im in enumerate(images)]
