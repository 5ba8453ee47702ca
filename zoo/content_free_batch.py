"""The content-free images of each training step (the content-free term, zoo.ecloss; the images
themselves: zoo.data.content_free): how many each rank adds to its batch, and which.

The global batch's content-free images are a function of (seed, step) only and each rank takes
its slice, so resumed and data-parallel runs see the same images. zoo.engine re-exports
CONTENT_FREE_SHARE.
"""
from __future__ import annotations

import torch

# Content-free images added to each batch when content_free > 0: a quarter of the batch.
CONTENT_FREE_SHARE = 0.25


def content_free_count(local_batch: int, weight: float) -> int:
    """Content-free images per rank and step: CONTENT_FREE_SHARE of the rank's batch when the
    content-free term is on (``weight`` > 0), else none."""
    return int(round(CONTENT_FREE_SHARE * local_batch)) if weight > 0 else 0


def content_free_images(seed: int, step: int, n: int, world: int, rank: int,
                        input_size: int) -> torch.Tensor:
    """Rank ``rank``'s ``n`` content-free images of training step ``step`` (of ``world`` ranks)."""
    from .data.content_free import random_content_free_batch
    g = torch.Generator().manual_seed(seed * 1_000_033 + step)
    free = random_content_free_batch(n * world, input_size, g)
    return free[rank * n:(rank + 1) * n]
