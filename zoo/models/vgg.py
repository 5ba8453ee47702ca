"""VGG13/16/19 face networks with the ECLoss target layer exposed.

Convolutional configurations A-E of Simonyan & Zisserman (2015), optional BatchNorm, a width
multiplier on every conv, any input size divisible by 16. The ECLoss target layer is the last conv
layer after its ReLU, *before* the fifth max-pool: at 224 px it is 512 x 14 x 14 (paper). The
embedding head then pools it (the fifth max-pool), flattens, and projects to an embedding
(default 512-d) followed by BatchNorm1d, as insightface's face embeddings do. Classifier heads
(softmax / CosFace / ArcFace) live apart in zoo.heads so the embedding network is what one
exports and verifies with.
"""
from __future__ import annotations

from typing import Dict, List, Tuple, Union

import torch
from torch import nn

__all__ = ["PADDINGS", "VGG_CONFIGS", "VGGFace"]

PADDINGS = ("zeros", "reflect", "replicate", "circular")

# 'M' = 2x2 max-pool. The trailing pool of VGG is part of the embedding head here.
VGG_CONFIGS: Dict[int, List[Union[int, str]]] = {
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512],
}


def scaled_channels(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class VGGFace(nn.Module):
    """VGG face embedding network.

    Args:
        depth: 13, 16 or 19.
        batch_norm: BatchNorm after every conv.
        width: channel multiplier (1.0 = the paper's 512-channel target layer).
        input_size: square input side, divisible by 16 (target map is input_size / 16).
        embedding_dim: size of the embedding (default 512).
        dropout: dropout before the embedding projection.
        embedding_bn: BatchNorm1d on the embedding (insightface style). Off, the network has no
            batch statistics at all when batch_norm is off too, which makes data-parallel runs
            on CPU (where SyncBatchNorm does not exist) equal single-process runs.
        padding: how every 3x3 conv pads its input: "zeros" (VGG, the paper), "reflect",
            "replicate" or "circular". Zero padding marks the image border in every layer, which
            lets a channel fire at a fixed cell whatever the face (docs/results.md); circular
            padding has no border at all, so every conv layer is exactly equivariant to shifts
            by whole cells.
    """

    def __init__(self, depth: int = 16, batch_norm: bool = False, width: float = 1.0,
                 input_size: int = 224, embedding_dim: int = 512, dropout: float = 0.0,
                 embedding_bn: bool = True, in_chans: int = 3, padding: str = "zeros"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if depth not in VGG_CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_CONFIGS)}, got {depth}")
        if input_size % 16 != 0 or input_size < 32:
            raise ValueError(f"input_size must be a multiple of 16 and >= 32, got {input_size}")
        if not width > 0:
            raise ValueError(f"width multiplier must be > 0, got {width}")
        self.depth, self.batch_norm, self.width = depth, batch_norm, float(width)
        self.padding = padding
        self.input_size, self.embedding_dim = int(input_size), int(embedding_dim)
        layers: List[nn.Module] = []
        c_in = in_chans
        for v in VGG_CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            c_out = scaled_channels(v, width)
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm,
                                    padding_mode=padding))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=True))
            c_in = c_out
        # The last module is the target layer's ReLU: forward_features ends there.
        self.features = nn.Sequential(*layers)
        self.feature_channels = c_in
        self.feature_size = self.input_size // 16
        pooled = self.feature_size // 2
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.embedding = nn.Linear(c_in * pooled * pooled, self.embedding_dim)
        self.embedding_bn = nn.BatchNorm1d(self.embedding_dim) if embedding_bn else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def target_layer(self) -> str:
        """Module path of the ECLoss target layer (the last conv's ReLU)."""
        return f"features.{len(self.features) - 1}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The ECLoss target layer: post-ReLU maps of the last conv, (B, C, input/16, input/16)."""
        if x.dim() != 4 or x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"expected images (B, 3, {self.input_size}, {self.input_size}), got "
                             f"{tuple(x.shape)}")
        return self.features(x)

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        """Target maps -> embedding (B, embedding_dim), not normalised."""
        z = torch.flatten(self.pool(fmap), 1)
        return self.embedding_bn(self.embedding(self.dropout(z)))

    def forward_with_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(embedding, target maps) in one pass: what training with ECLoss needs."""
        fmap = self.forward_features(x)
        return self.forward_head(fmap), fmap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

