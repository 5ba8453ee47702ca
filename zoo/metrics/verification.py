"""Face verification metrics: the LFW 10-fold protocol, ROC AUC and TAR at fixed FAR.

Scores are cosine similarities of L2-normalised embeddings (higher = more likely the same
person). The k-fold accuracy follows insightface's evaluation: for each test fold the threshold
that maximises accuracy on the other folds is applied to the test fold, so no fold's threshold
ever sees its own pairs.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["embed", "embed_views", "pair_scores", "best_threshold", "kfold_accuracy", "roc_auc",
           "tar_at_far", "verification_report"]


@torch.no_grad()
def _embed_batches(model: torch.nn.Module, images, batch_size: int, device, mirror: bool
                   ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(one view, flip TTA or None), each (N, D) L2-normalised; the mirror pass only when
    ``mirror``. The model is in eval mode while it runs and restored after."""
    if not isinstance(images, torch.Tensor):
        images = torch.stack(list(images))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    one, both = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        e = model(x).float()
        one.append(F.normalize(e, dim=1).cpu())
        if mirror:
            both.append(F.normalize(e + model(torch.flip(x, dims=[3])).float(), dim=1).cpu())
    model.train(was_training)
    cat = (lambda xs: torch.cat(xs) if xs else torch.empty(0))  # noqa: E731
    return cat(one), (cat(both) if mirror else None)


def embed_views(model: torch.nn.Module, images: torch.Tensor | Iterable, batch_size: int = 64,
                device: torch.device | str | None = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Both test protocols from one pass over the images and their mirrors: (one view, flip TTA),
    each (N, D) L2-normalised. One view is the network on the image; flip TTA averages the
    image's and its mirror's embeddings (insightface)."""
    return _embed_batches(model, images, batch_size, device, mirror=True)


def embed(model: torch.nn.Module, images: torch.Tensor | Iterable, batch_size: int = 64,
          flip: bool = False, device: torch.device | str | None = None) -> torch.Tensor:
    """L2-normalised embeddings (N, D) of preprocessed images (N, 3, S, S) or an iterable of
    image tensors. flip=True averages the embeddings of the image and its mirror (insightface)."""
    one, both = _embed_batches(model, images, batch_size, device, mirror=flip)
    return both if flip else one


def pair_scores(embeddings: torch.Tensor, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair (first[k], second[k]) of normalised embeddings."""
    e = embeddings.double()
    return (e[torch.as_tensor(first)] * e[torch.as_tensor(second)]).sum(1).numpy()


def _accuracy(scores, issame, threshold):
    return float(np.mean((scores >= threshold) == issame))


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> float:
    """The threshold maximising accuracy: tried at every midpoint between sorted scores."""
    s = np.sort(np.unique(scores))
    candidates = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    # vectorised accuracy of every candidate: positives above + negatives below
    pos = np.sort(scores[issame])
    neg = np.sort(scores[~issame])
    tp = len(pos) - np.searchsorted(pos, candidates, side="left")
    tn = np.searchsorted(neg, candidates, side="left")
    return float(candidates[int(np.argmax(tp + tn))])


def kfold_accuracy(scores: np.ndarray, issame: np.ndarray, folds: Optional[np.ndarray] = None,
                   num_folds: int = 10) -> Dict[str, object]:
    """LFW protocol: mean and std of the test-fold accuracies, each with the threshold chosen on
    the other folds. ``folds`` gives each pair's fold (else contiguous equal folds)."""
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    if scores.shape != issame.shape or scores.ndim != 1 or len(scores) < 2:
        raise ValueError("need matching 1-D scores and labels, "
                         f"got {scores.shape} and {issame.shape}")
    if folds is None:
        if len(scores) < num_folds:  # folds without a pair: no honest k-fold accuracy
            raise ValueError(f"{len(scores)} pairs: the {num_folds}-fold protocol needs at "
                             f"least {num_folds} (one per fold)")
        folds = np.arange(len(scores)) * num_folds // len(scores)
    folds = np.asarray(folds)
    accs, thresholds = [], []
    for k in np.unique(folds):
        test = folds == k
        th = best_threshold(scores[~test], issame[~test])
        thresholds.append(th)
        accs.append(_accuracy(scores[test], issame[test], th))
    return {"accuracy": float(np.mean(accs)), "std": float(np.std(accs)),
            "fold_accuracies": [float(a) for a in accs], "thresholds": thresholds,
            "threshold": float(np.mean(thresholds))}


def roc_auc(scores: np.ndarray, issame: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties count 1/2."""
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    n_pos, n_neg = int(issame.sum()), int((~issame).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both positive and negative pairs")
    from scipy.stats import rankdata
    ranks = rankdata(scores)  # average ranks handle ties
    return float((ranks[issame].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tar_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> Optional[float]:
    """True accept rate at the threshold whose false accept rate is <= far; None when there are
    too few negative pairs to measure that FAR (fewer than 1/far)."""
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    neg = np.sort(scores[~issame])[::-1]
    if len(neg) < int(np.ceil(1.0 / far)):
        return None
    allowed = int(np.floor(far * len(neg)))        # negatives allowed above the threshold
    threshold = neg[allowed] if allowed < len(neg) else -np.inf
    return float(np.mean(scores[issame] > threshold))


def verification_report(scores: np.ndarray, issame: np.ndarray,
                        folds: Optional[np.ndarray] = None) -> Dict[str, object]:
    """Everything at once: k-fold accuracy +- std, AUC, TAR@FAR 1e-2 / 1e-3 where measurable."""
    rep = kfold_accuracy(scores, issame, folds)
    rep["auc"] = roc_auc(scores, issame)
    rep["tar_at_far_1e-2"] = tar_at_far(scores, issame, 1e-2)
    rep["tar_at_far_1e-3"] = tar_at_far(scores, issame, 1e-3)
    rep["num_pairs"] = int(len(scores))
    return rep
