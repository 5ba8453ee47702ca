"""Landmarks of a resized image (paper Fig. 7 draws the part masks on resized faces).

The part geometry (PART_NAMES, PART_COLORS, ``part_masks_from_landmarks``,
``overlay_part_masks``, the LaPa-106 mapping) lives in the torch-free export.part_masks and the
landmark file readers (iBUG .pts, LaPa 106) in export.face_parts, which the runtime shares;
import them from there. This module adds ``scale_landmarks``.
"""

import numpy as np


def scale_landmarks(pts, src_hw, dst_hw) -> np.ndarray:
    """Landmarks of an image of size src (H, W) after resizing it to dst (H, W).

    Pixel centres sit at integers, so x' = (x + 0.5) * W'/W - 0.5 (the resize's own mapping).
    """
    pts = np.asarray(pts, dtype=np.float64)
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    return np.stack([(pts[:, 0] + 0.5) * sx - 0.5, (pts[:, 1] + 0.5) * sy - 0.5], 1)
