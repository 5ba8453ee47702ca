"""The torch modules each exported ONNX graph is traced from (docs/export.md, "Exported files").

EmbeddingModel   -> embedding.onnx and model.ts: images -> L2-normalised embeddings (flip TTA).
FeatureMapModel  -> featuremap.onnx: images -> target maps, top-10% heatmaps and masks.
HeadModel        -> head.onnx: target maps -> the embedding head split by channel (per-part
                    evidence, export.channel_evidence).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from export.channel_table import TOP_FRACTION, top_k_pixels
from export.model_dir import HEAD_FILE

from .onnx_writer import ExportError

__all__ = ["EmbeddingModel", "FeatureMapModel", "HeadModel"]


class EmbeddingModel(nn.Module):
    """images -> L2-normalised embeddings; flip=True adds the mirror image's embedding first."""

    def __init__(self, net: nn.Module, flip: bool = True):
        super().__init__()
        self.net = net
        self.flip = bool(flip)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.flip:
            # One pass over [x; mirror x] instead of two graphs: same maths, one batch.
            e = self.net(torch.cat([images, torch.flip(images, dims=[3])], 0))
            e = e.reshape(2, -1, e.shape[-1]).sum(0)
        else:
            e = self.net(images)
        return F.normalize(e, p=2.0, dim=1)


class FeatureMapModel(nn.Module):
    """images -> target maps (B,C,n,n), top-fraction heatmaps (B,C,S,S) and their masks.

    The masks are zoo.metrics.explainability.top10_activation (paper Eq. 8-9) for a batch:
    bilinear upsampling (align_corners=False) to the input size, then per channel the pixels at
    or above the k-th largest value, k = round(10% of S*S), never a pixel at the map's minimum
    (a sparse map keeps only its active pixels; a constant map keeps nothing).
    heatmaps = the upsampled map where the mask is on, 0 elsewhere."""

    def __init__(self, net: nn.Module, fraction: float = TOP_FRACTION):
        super().__init__()
        self.net = net
        self.size = int(net.input_size)
        self.k = top_k_pixels(self.size, fraction)

    def forward(self, images: torch.Tensor):
        fmap = self.net.forward_features(images)
        up = F.interpolate(fmap, size=(self.size, self.size), mode="bilinear",
                           align_corners=False)
        flat = up.flatten(2)
        thr = flat.topk(self.k, dim=2).values[..., -1:]
        keep = (flat >= thr) & (flat > flat.amin(2, keepdim=True))
        heat = torch.where(keep, flat, torch.zeros_like(flat)).reshape(up.shape)
        return fmap, heat, keep.reshape(up.shape)


class HeadModel(nn.Module):
    """target maps (B,C,n,n) -> the embedding head's per-channel terms (B,C,D) and bias (B,D).

    At inference the head (max-pool, flatten, dropout = identity, linear, BatchNorm1d with its
    running statistics) is affine in the pooled maps z: head(z) = W z + b, W and b folded in
    float64. Channel c's term is W[:, block c] (z_c - r_c) and the bias is b + W r, where r
    (``reference``, (C, P) pooled maps, default 0) is the baseline the terms are measured from:
    whatever r, terms.sum(1) + bias == forward_head(maps).
    """

    def __init__(self, net: nn.Module, reference: Optional[torch.Tensor] = None):
        super().__init__()
        lin, bn = getattr(net, "embedding", None), getattr(net, "embedding_bn", None)
        pool = getattr(net, "pool", None)
        if not (isinstance(lin, nn.Linear) and isinstance(pool, nn.MaxPool2d)
                and isinstance(bn, (nn.BatchNorm1d, nn.Identity))):
            raise ExportError(f"{HEAD_FILE}: per-part evidence needs the zoo's embedding head "
                              f"(max-pool -> linear -> BatchNorm1d); {type(net).__name__} has "
                              "another")
        w = lin.weight.detach().double()
        b = (lin.bias.detach().double() if lin.bias is not None
             else torch.zeros(w.shape[0], dtype=torch.float64))
        if isinstance(bn, nn.BatchNorm1d):
            if bn.running_mean is None:
                raise ExportError(f"{HEAD_FILE}: the embedding BatchNorm1d keeps no running "
                                  "statistics, so the head is not affine at inference")
            scale = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
            shift = -bn.running_mean.detach().double() * scale
            if bn.affine:
                scale, shift = (scale * bn.weight.detach().double(),
                                shift * bn.weight.detach().double() + bn.bias.detach().double())
            w, b = scale[:, None] * w, scale * b + shift
        channels = int(net.feature_channels)
        w = w.reshape(w.shape[0], channels, -1)                          # (D, C, P)
        ref = torch.zeros(w.shape[1:], dtype=torch.float64)
        if reference is not None:
            ref = reference.detach().double().reshape(ref.shape)
            b = b + torch.einsum("dcp,cp->d", w, ref)
        self.pool = pool
        self.register_buffer("weight", w.float())
        self.register_buffer("reference", ref.float())
        self.register_buffer("bias", b.float())

    def forward(self, fmap: torch.Tensor):
        z = torch.flatten(self.pool(fmap), 2) - self.reference           # (B, C, P)
        terms = torch.einsum("bcp,dcp->bcd", z, self.weight)
        return terms, self.bias.expand(fmap.shape[0], -1)
