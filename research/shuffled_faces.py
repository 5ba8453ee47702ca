"""Part-shuffled faces (the ICNN paper's control images) as content-free training images (our
extension, ``--shuffled-faces S`` of ``python -m research.train``).

``patch_shuffled`` cuts faces into a SHUFFLE_GRID x SHUFFLE_GRID grid of tiles and puts them back
in a random order: the textures of a face (skin, eyes, hair, collar) with no face in them, so a
channel that fires on bright skin-like texture wherever it is - on a neck, a lit wall - is pushed
to the negative template like the blank and noise images of the content-free term
(zoo.ecloss.content_free_term) whose places they take.
"""
from __future__ import annotations

import torch

__all__ = ["SHUFFLE_GRID", "patch_shuffled", "shuffled_face_count"]

# Tiles per side of a part-shuffled face: a tile (28 px at 112, 56 at 224) holds a whole eye or
# mouth, so what is lost is where the parts are, not what they look like.
SHUFFLE_GRID = 4


def shuffled_face_count(n_content_free: int, share: float) -> int:
    """How many of a rank's ``n_content_free`` content-free images are part-shuffled faces."""
    return min(n_content_free, int(round(share * n_content_free)))


def patch_shuffled(images: torch.Tensor, generator: torch.Generator,
                   grid: int = SHUFFLE_GRID) -> torch.Tensor:
    """(N, C, H, W) -> the same images with their grid x grid tiles in a random order each (a
    permutation that moves at least two tiles). Rows and columns beyond grid * (H // grid) stay
    where they are."""
    if images.ndim != 4:
        raise ValueError(f"patch_shuffled: expected (N, C, H, W) images, got {tuple(images.shape)}")
    n, c, h, w = images.shape
    th, tw = h // grid, w // grid
    if grid < 2 or th < 1 or tw < 1:
        raise ValueError(f"patch_shuffled: cannot cut {h} x {w} images into {grid} x {grid} tiles")
    out = images.clone()
    body = images[:, :, :grid * th, :grid * tw]
    # (N, C, grid, th, grid, tw) -> (N, grid*grid, C, th, tw)
    tiles = body.reshape(n, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(
        n, grid * grid, c, th, tw)
    for i in range(n):
        perm = torch.randperm(grid * grid, generator=generator)
        if bool((perm == torch.arange(grid * grid)).all()):
            perm = perm.roll(1)       # the identity would be a face, not a shuffled one
        t = tiles[i, perm].reshape(grid, grid, c, th, tw).permute(2, 0, 3, 1, 4)
        out[i, :, :grid * th, :grid * tw] = t.reshape(c, grid * th, grid * tw)
    return out
