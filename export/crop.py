"""Optional face crop for the runtime CLI's --crop: MTCNN from facenet-pytorch (torch side).

The runtime itself needs no torch; this module is imported only when --crop is given. It is the
training crop of zoo.prep (MTCNN detect, largest face, square box of side max(w, h) * (1 +
margin) around the box centre, no alignment, outside the image black), so a photo is cropped
the way the model's training faces were; the runtime then resizes the crop to the input size.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np
from PIL import Image

from .images import ImageError, load_image

DEFAULT_MARGIN = 0.2  # zoo.prep's default
_MTCNN = None


def _detector():
    global _MTCNN
    if _MTCNN is None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise RuntimeError("--crop needs facenet-pytorch and torch: pip install "
                               f"facenet-pytorch==2.5.3 ({exc})") from None
        _MTCNN = MTCNN(keep_all=True, device="cpu")
    return _MTCNN


def crop_face(src: Union[str, os.PathLike, Image.Image, np.ndarray],
              margin: float = DEFAULT_MARGIN) -> Image.Image:
    """The square crop (RGB PIL, not resized) of the largest MTCNN face in ``src``."""
    try:
        from zoo.prep import _largest, square_crop_box  # the training pipeline's own rule
    except ImportError as exc:  # the zoo (and torch) are not installed: a runtime-only machine
        raise RuntimeError("--crop needs facenet-pytorch and torch: pip install "
                           f"facenet-pytorch==2.5.3 ({exc})") from None
    name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else "image"
    img = load_image(src)
    try:
        boxes, _ = _detector().detect(img)
    except (RuntimeError, ValueError) as exc:  # e.g. an image too small to scan
        raise ImageError(f"{name}: face detection failed ({exc})") from None
    if boxes is None or len(boxes) == 0:
        raise ImageError(f"{name}: MTCNN found no face (run without --crop on a face crop)")
    box = square_crop_box(boxes[_largest(np.asarray(boxes, dtype=np.float64))], margin)
    return img.crop(tuple(int(round(v)) for v in box))
