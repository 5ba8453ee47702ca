"""Chance-level controls for the map metrics (docs/results.md, the 14 x 14 study).

A metric of where channels fire (PE, LS, peaks, ring shares, input dependence) means little
without its value on maps that keep every activation value but carry no spatial information:
``shuffle_map_cells`` gives those maps, and zoo.evaluate(shuffle_cells=True) measures every
explanation metric on them (verification is unchanged: the embedding does not see the shuffle).
"""
from __future__ import annotations

import numpy as np

__all__ = ["shuffle_map_cells", "SHUFFLE_SEED"]

SHUFFLE_SEED = 0


def shuffle_map_cells(maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(..., n, n) maps with the n*n cells of every map in their own random order: each map
    keeps its values (peak, mean, sparsity) and loses where they were."""
    maps = np.asarray(maps)
    n2 = maps.shape[-1] * maps.shape[-2]
    flat = maps.reshape(-1, n2)
    order = np.argsort(rng.random(flat.shape), axis=1)        # one permutation per map
    return np.take_along_axis(flat, order, axis=1).reshape(maps.shape)
