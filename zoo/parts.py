"""Face part masks from landmarks (paper Fig. 7): the landmark file readers and resizing.

The geometry (PART_NAMES, PART_COLORS, ``part_masks_from_landmarks``, ``overlay_part_masks``,
the LaPa-106 mapping) lives in the torch-free export.part_masks, which the runtime shares; this
module adds the readers of the zoo's landmark files (iBUG .pts, LaPa 106) and
``scale_landmarks``, and re-exports the geometry so that ``zoo.parts`` stays the one place to
import everything about part masks from on the torch side.
"""
from pathlib import Path

import numpy as np

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


def scale_landmarks(pts, src_hw, dst_hw) -> np.ndarray:
    """Landmarks of an image of size src (H, W) after resizing it to dst (H, W).

    Pixel centres sit at integers, so x' = (x + 0.5) * W'/W - 0.5 (the resize's own mapping).
    """
    pts = np.asarray(pts, dtype=np.float64)
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    return np.stack([(pts[:, 0] + 0.5) * sx - 0.5, (pts[:, 1] + 0.5) * sy - 0.5], 1)
