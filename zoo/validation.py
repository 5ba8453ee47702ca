"""Verification of an embedding network on held-out faces: the library API that training
(zoo.engine, at the end of a run) and evaluation (zoo.evaluate) share.

    verification_on(model, "orl", 112)          held-out ORL identities, LFW-shape pairs
    verification_on(model, "lfw.bin", 112)      an insightface .bin verification set
    validate(model, ["orl", "lfw.bin"], 112)    {"orl": report, "lfw": report}

A report is zoo.metrics.verification.verification_report's dict (10-fold accuracy, AUC, TAR).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

from .metrics.verification import embed, embed_views, pair_scores, verification_report

__all__ = ["verification_on", "validate", "validation_name", "ONE_VIEW_KEYS"]

ONE_VIEW_KEYS = ("accuracy", "std", "auc", "threshold")


def verification_on(model, val: str, input_size: int, device=None, flip: bool = True,
                    orl_num_train: int = 30, orl_split_seed: int = 0, orl_num_val: int = 0,
                    orl_split: str = "heldout", orl_fold: int = 0) -> Dict[str, object]:
    """Verification report on 'orl' (held-out identities, or orl_split="val" for the validation
    identities; LFW-shape pairs) or a .bin file."""
    from .data.transforms import face_transform
    if val == "orl":
        from .data.verification import ORLPairs
        pairs = ORLPairs(transform=face_transform(input_size), num_train=orl_num_train,
                         seed=orl_split_seed, split=orl_split, num_val=orl_num_val,
                         fold=orl_fold)
        images = torch.stack([pairs.dataset[i][0] for i in range(len(pairs.dataset))])
        return _report(model, images, pairs.pairs[:, 0], pairs.pairs[:, 1], pairs.issame,
                       pairs.folds, device, flip)
    from .data.verification import read_bin
    images, issame = read_bin(val, input_size=input_size)
    idx = np.arange(len(issame)) * 2
    return _report(model, images, idx, idx + 1, issame, None, device, flip)


def _report(model, images, first, second, issame, folds, device, flip: bool) -> Dict[str, object]:
    """The report of one protocol; with flip TTA it also carries ``one_view``: accuracy, AUC
    and threshold of the same pairs embedded without the mirror (what an export without flip
    TTA, the default, needs for its threshold), from the same forward passes."""
    if not flip:
        emb = embed(model, images, device=device)
        return verification_report(pair_scores(emb, first, second), issame, folds)
    one, both = embed_views(model, images, device=device)
    report = verification_report(pair_scores(both, first, second), issame, folds)
    single = verification_report(pair_scores(one, first, second), issame, folds)
    report["one_view"] = {k: single[k] for k in ONE_VIEW_KEYS if k in single}
    return report


def validation_name(val: str) -> str:
    """The key of a validation set in reports: "orl", or a .bin file's stem ("lfw")."""
    return "orl" if val == "orl" else Path(val).stem


def validate(model, val_sets: Sequence[str], input_size: int, device=None,
             orl_num_train: int = 30, orl_split_seed: int = 0,
             orl_num_val: int = 0, orl_fold: int = 0) -> Dict[str, Dict[str, object]]:
    """Verification on each validation set ('orl' held-out identities or .bin files), by name."""
    return {validation_name(val):
            verification_on(model, val, input_size, device, orl_num_train=orl_num_train,
                            orl_split_seed=orl_split_seed, orl_num_val=orl_num_val,
                            orl_fold=orl_fold)
            for val in val_sets}
