"""The off-head term (our extension, supervised by landmarks, not the paper's method;
``--off-head W`` of ``python -m research.train``): the share of each map's activation that lies
off the head, added to the loss with weight W, from the head masks of research.background
flipped with their images.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["off_head_share", "head_cells"]


def off_head_share(fmap: torch.Tensor, head: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The mean over the maps that fire of the share of their activation that lies off the head.

    fmap (B, C, n, n) post-ReLU maps of faces; head (B, n, n) in [0, 1], the share of each map
    cell that lies on the head (research.background.RandomBackground's head masks, area-pooled to
    the map by ``head_cells``). A map with no activation counts as 0 (silence off the head is
    what is asked). Minimising it teaches every channel to fire on the head only, whatever lies
    behind it (with random backgrounds, research.background)."""
    if fmap.dim() != 4 or head.shape != (fmap.shape[0], *fmap.shape[2:]):
        raise ValueError(f"off_head_share: maps {tuple(fmap.shape)} and head cells "
                         f"{tuple(head.shape)} do not match")
    x = fmap.float().clamp_min(0).flatten(2)                     # (B, C, n*n)
    off = (1.0 - head.float()).flatten(1)[:, None, :]            # (B, 1, n*n)
    total = x.sum(-1)
    share = (x * off).sum(-1) / total.clamp_min(eps)
    return torch.where(total > eps, share, torch.zeros_like(share)).mean()


def head_cells(head: torch.Tensor, map_size) -> torch.Tensor:
    """(B, S, S) head masks at the input size -> (B, n, n) the share of each map cell on the
    head (area pooling)."""
    return F.adaptive_avg_pool2d(head[:, None].float(), map_size)[:, 0]
