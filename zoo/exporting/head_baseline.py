"""head.onnx's baseline: the mean pooled target maps of reference faces.

The channel terms of head.onnx are measured from this mean rather than from zero maps:
post-ReLU maps are never negative, so terms measured from zero all carry the structure every
face shares; measured from the average face, that structure goes to the bias
(docs/export.md, "The baseline").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from export.images import preprocess
from zoo.data.folders import IdentityFolder
from zoo.data.orl import ORLFaces

__all__ = ["REFERENCE_FACES", "reference_faces", "reference_mean"]

REFERENCE_FACES = 100  # faces averaged for head.onnx's baseline (a mean: 100 are plenty)


def reference_faces(reference: Any, log: Callable[[str], None]) -> Tuple[List[Path], str]:
    """The face files whose mean target activity is head.onnx's baseline, and their name:
    "orl" (the ORL training identities, when the ORL faces are installed), a folder of identity
    sub-folders (the training data layout), or None (no faces: a zero baseline)."""
    if reference is None:
        return [], "zero"
    if isinstance(reference, str) and reference == "orl":
        try:
            faces = ORLFaces("train")
        except (ModuleNotFoundError, FileNotFoundError) as exc:
            log(f"note: no ORL faces for the per-part evidence baseline ({exc}); head.onnx "
                "measures the channel terms from zero maps")
            return [], "zero"
        paths, name = list(faces.paths), f"ORL training identities ({len(faces.identities)})"
    else:
        paths, name = list(IdentityFolder(Path(reference)).paths), f"faces under {reference}"
    if len(paths) > REFERENCE_FACES:  # evenly spread: every identity, bounded export time
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, REFERENCE_FACES).astype(int)]
    return paths, name


def reference_mean(net: nn.Module, reference: Any, flip: bool,
                   log: Callable[[str], None]) -> Tuple[Optional[torch.Tensor], str]:
    """(C, P) mean pooled target maps of the reference faces (reference_faces), per view (with
    their mirrors when the embedding uses flip TTA), preprocessed as the runtime does, and the
    baseline's description for the metadata; (None, "zero") without faces."""
    paths, name = reference_faces(reference, log)
    if not paths:
        return None, "zero"
    cfg, size, total = net.zoo_config, int(net.input_size), None
    for start in range(0, len(paths), 32):
        x = torch.from_numpy(preprocess(paths[start:start + 32], size, cfg["mean"],
                                        cfg["std"], cfg.get("channel_order", "RGB")))
        views = [x, torch.flip(x, dims=[3])] if flip else [x]
        with torch.no_grad():
            for v in views:
                z = torch.flatten(net.pool(net.forward_features(v)), 2).double().sum(0)
                total = z if total is None else total + z
    count = len(paths) * (2 if flip else 1)
    log(f"per-part evidence baseline: mean target maps of {len(paths)} faces ({name})")
    return total / count, f"mean pooled target maps of {len(paths)} faces: {name}"
