"""What the runtime's pictures share (no matplotlib in the runtime): the jet colour map, the
font, and the decision header of a match picture."""
from typing import Optional

import numpy as np
from PIL import ImageDraw, ImageFont

__all__ = ["jet", "font", "draw_decision", "no_minus_zero", "POSITIVE", "NEGATIVE", "NEUTRAL"]

POSITIVE, NEGATIVE, NEUTRAL = (46, 139, 87), (196, 58, 58), (140, 140, 140)


def no_minus_zero(value: float, digits: int = 4) -> float:
    """``value``, or 0.0 when it rounds to zero at ``digits``: prints +0.0000, never -0.0000."""
    return value if round(value, digits) != 0 else 0.0


def jet(v: np.ndarray) -> np.ndarray:
    """Jet colour map for v in [0, 1] -> (..., 3) uint8."""
    v = np.clip(v, 0, 1)[..., None]
    rgb = np.clip(1.5 - np.abs(4 * v - np.array([3.0, 2.0, 1.0])), 0, 1)
    return (rgb * 255).astype(np.uint8)


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def draw_decision(draw: ImageDraw.ImageDraw, x: int, y: int, same: Optional[bool],
                  similarity: float, threshold: Optional[float],
                  model_name: Optional[str]) -> None:
    """The verdict (coloured) and the line 'similarity / threshold / model' below it."""
    if same is None:
        verdict, colour = "similarity only (no threshold)", (0, 0, 0)
    else:
        verdict, colour = ("same person", POSITIVE) if same else ("different people", NEGATIVE)
    draw.text((x, y), verdict, fill=colour, font=font(20))
    line = f"similarity {similarity:.4f}"
    if threshold is not None:
        line += f"   threshold {threshold:.4f}"
    if model_name:
        line += f"   model {model_name}"
    draw.text((x, y + 28), line, fill=(0, 0, 0), font=font(14))
