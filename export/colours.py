"""Colour maps for the runtime's pictures (no matplotlib in the runtime)."""
import numpy as np

__all__ = ["jet"]


def jet(v: np.ndarray) -> np.ndarray:
    """Jet colour map for v in [0, 1] -> (..., 3) uint8."""
    v = np.clip(v, 0, 1)[..., None]
    rgb = np.clip(1.5 - np.abs(4 * v - np.array([3.0, 2.0, 1.0])), 0, 1)
    return (rgb * 255).astype(np.uint8)
