"""Classifier heads on face embeddings: softmax (the paper), CosFace and ArcFace.

Each head maps (embedding, label) to logits for cross-entropy. The margin heads normalise both
embedding and class weights, so the logit of class k is s * cos(theta_k), and change only the
target class: CosFace s*(cos theta - m) (Wang et al. 2018), ArcFace s*cos(theta + m)
(Deng et al. 2019).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SoftmaxHead", "CosFaceHead", "ArcFaceHead", "HEADS", "create_head"]


class SoftmaxHead(nn.Module):
    """Plain linear classifier (the paper trains VGG with softmax cross-entropy)."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(embedding)


class _CosineHead(nn.Module):
    def __init__(self, embedding_dim: int, num_classes: int, scale: float, margin: float):
        super().__init__()
        if scale <= 0 or margin < 0:
            raise ValueError(f"need scale > 0 and margin >= 0, got s={scale}, m={margin}")
        self.scale, self.margin = float(scale), float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embedding.float()), F.normalize(self.weight.float()))

    def _target_logit(self, cos_target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract: defined by each margin head

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = self.cosine(embedding)
        if labels is None:  # inference: no margin
            return self.scale * cos
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        target = self._target_logit(cos[onehot])
        cos = cos.masked_scatter(onehot, target)
        return self.scale * cos


class CosFaceHead(_CosineHead):
    """CosFace: target logit s * (cos theta - m)."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 64.0,
                 margin: float = 0.35):
        super().__init__(embedding_dim, num_classes, scale, margin)

    def _target_logit(self, cos_target):
        return cos_target - self.margin


class ArcFaceHead(_CosineHead):
    """ArcFace: target logit s * cos(theta + m); past theta = pi - m, where cos(theta + m) would
    stop decreasing, it uses insightface's linear fallback cos theta - m sin m."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 64.0,
                 margin: float = 0.5):
        super().__init__(embedding_dim, num_classes, scale, margin)
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin

    def _target_logit(self, cos_target):
        sin = torch.sqrt((1.0 - cos_target * cos_target).clamp_min(1e-12))
        phi = cos_target * self.cos_m - sin * self.sin_m
        return torch.where(cos_target > self.threshold, phi, cos_target - self.fallback)


HEADS = {"softmax": SoftmaxHead, "cosface": CosFaceHead, "arcface": ArcFaceHead}


def create_head(name: str, embedding_dim: int, num_classes: int, **kwargs) -> nn.Module:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {sorted(HEADS)}")
    return HEADS[name](embedding_dim, num_classes, **kwargs)
