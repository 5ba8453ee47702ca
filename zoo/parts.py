"""Face part masks from landmarks (paper Fig. 7): the landmark file readers and resizing.

The geometry (PART_NAMES, PART_COLORS, ``part_masks_from_landmarks``, ``overlay_part_masks``,
the LaPa-106 mapping) lives in the torch-free export.part_masks, which the runtime shares; this
module adds ``scale_landmarks`` and re-exports the geometry and the landmark file readers
(iBUG .pts, LaPa 106; export.face_parts, which the runtime's --landmarks reads with), so
that ``zoo.parts`` stays the one place to import everything about part masks from on the torch
side.
"""

import numpy as np

from export.face_parts import read_lapa_106, read_pts  # noqa: F401  (the readers, torch-free)
from export.part_masks import (  # noqa: F401  (re-exported: the geometry's public names)
    FOREHEAD_HEIGHT,
    HAIR_HEIGHT,
    HAIR_WIDTH,
    JAW_BAND,
    LAPA106_TO_68,
    MARGIN,
    PART_COLORS,
    PART_NAMES,
    lapa106_to_68,
    overlay_part_masks,
    part_masks_from_landmarks,
)

# ------------------------------------------------------------------------------------ readers

def scale_landmarks(pts, src_hw, dst_hw) -> np.ndarray:
    """Landmarks of an image of size src (H, W) after resizing it to dst (H, W).

    Pixel centres sit at integers, so x' = (x + 0.5) * W'/W - 0.5 (the resize's own mapping).
    """
    pts = np.asarray(pts, dtype=np.float64)
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    return np.stack([(pts[:, 0] + 0.5) * sx - 0.5, (pts[:, 1] + 0.5) * sy - 0.5], 1)
