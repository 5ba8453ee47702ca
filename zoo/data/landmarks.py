"""Face images with iBUG 68-point landmark files beside them (300-W, AFW, Helen, LFPW layout).

    root/**/name.jpg + root/**/name.pts

The explainability metrics (zoo.evaluate) need each face's landmarks to draw its part masks;
ORL carries its own (zoo.data.orl), any other set comes in this layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np

from export.images import is_image_file

from .images import load_rgb

__all__ = ["LandmarkFolder"]


class LandmarkFolder:
    """Images with iBUG 68-point .pts files beside them (300-W, AFW, Helen, LFPW layout):
    ``root/**/name.jpg`` + ``root/**/name.pts``. Images without a .pts are listed in ``missing``
    (not silently dropped); a bad .pts raises an error naming the file."""

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: not a folder of images with .pts landmarks")
        images = sorted(p for p in self.root.rglob("*") if p.is_file() and is_image_file(p.name))
        self.paths = [p for p in images if p.with_suffix(".pts").is_file()]
        self.missing = [p for p in images if not p.with_suffix(".pts").is_file()]
        if not self.paths:
            raise FileNotFoundError(f"{self.root}: no image has a .pts landmark file beside it")

    def __len__(self):
        return len(self.paths)

    def image(self, idx):
        return load_rgb(self.paths[idx])

    def landmarks(self, idx) -> np.ndarray:
        from export.face_parts import read_pts
        pts = read_pts(self.paths[idx].with_suffix(".pts"))
        if pts.shape != (68, 2):
            raise ValueError(f"{self.paths[idx].with_suffix('.pts')}: expected 68 points, got "
                             f"{len(pts)}")
        return pts - 1.0  # .pts files are 1-based (Matlab); we use 0-based pixel centres

    def item(self, idx) -> Tuple[object, np.ndarray, Tuple[int, int]]:
        """(PIL RGB image, (68, 2) landmarks, (height, width)): what zoo.evaluate measures."""
        img = self.image(idx)
        return img, self.landmarks(idx), (img.height, img.width)
