"""The int8 accuracy gate: the numbers an int8 file must reach against the float file of the
same export, on held-out faces (docs/export.md, "int8"; numpy, checked against brute force in
tests/test_int8.py).

    embeddings    mean cosine int8 vs float >= GATE_MIN_MEAN_COSINE (the minimum is reported),
                  verification ROC AUC over all held-out pairs within GATE_MAX_AUC_CHANGE of the
                  float AUC, at most GATE_MAX_FLIP_RATE of the pair decisions flipped at the
                  model's threshold; at least GATE_MIN_PAIRS pairs, or the gate refuses to judge
                  (zoo.exporting.int8_faces checks the gate set's size).
    feature maps  mean IoU of the top-10% masks (every channel of every held-out face) int8 vs
                  float >= GATE_MIN_MASK_IOU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from export.channel_table import SHOWN_CHANNELS, shown_channels
from zoo.metrics.verification import best_threshold, roc_auc

__all__ = ["Int8GateError", "EmbeddingGate", "MaskGate", "embedding_gate", "mask_iou",
           "mask_gate", "shown_agreement", "GATE_MIN_MEAN_COSINE", "GATE_MAX_AUC_CHANGE",
           "GATE_MAX_FLIP_RATE", "GATE_MIN_MASK_IOU", "GATE_MIN_PAIRS", "GATE_MIN_SAME_PAIRS",
           "GATE_MIN_DIFFERENT_PAIRS", "GATE_MAX_FACES"]

# The gate (issue 13).
GATE_MIN_MEAN_COSINE = 0.99
GATE_MAX_AUC_CHANGE = 0.005
GATE_MAX_FLIP_RATE = 0.01
GATE_MIN_MASK_IOU = 0.9
# Below this many pairs one flipped decision is more than 0.2% and the flip rate says little:
# the gate refuses to judge rather than pass on a handful of pairs.
GATE_MIN_PAIRS = 500
GATE_MIN_SAME_PAIRS = 20
GATE_MIN_DIFFERENT_PAIRS = 20
GATE_MAX_FACES = 2000     # all pairs of 2000 faces: 2.0 M pairs


class Int8GateError(RuntimeError):
    """The int8 model failed its accuracy gate; the message names each failed number."""


@dataclass
class EmbeddingGate:
    faces: int
    pairs: int
    same_pairs: int
    mean_cosine: float
    min_cosine: float
    min_cosine_face: str
    auc_float: float
    auc_int8: float
    threshold: float
    threshold_source: str
    flipped: int
    flip_rate: float
    failures: List[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return (f"mean cosine {self.mean_cosine:.5f} (min {self.min_cosine:.5f}, limit >= "
                f"{GATE_MIN_MEAN_COSINE}); AUC {self.auc_int8:.4f} vs float {self.auc_float:.4f} "
                f"(change {self.auc_int8 - self.auc_float:+.4f}, limit +-{GATE_MAX_AUC_CHANGE}); "
                f"{self.flipped}/{self.pairs} decisions flipped at threshold "
                f"{self.threshold:.4f} ({self.flip_rate:.2%}, limit {GATE_MAX_FLIP_RATE:.0%})")


def embedding_gate(float_emb: np.ndarray, int8_emb: np.ndarray, labels: np.ndarray,
                   threshold: Optional[float], names: Optional[Sequence[str]] = None,
                   threshold_source: str = "model metadata") -> EmbeddingGate:
    """The embedding gate's numbers for faces with identity ``labels``: cosine of each face's
    int8 to float embedding, ROC AUC of all pairs (i < j, same identity = positive) both ways,
    decisions (score >= threshold) that differ. No threshold: the float scores' best-accuracy
    threshold on these pairs (zoo.metrics.verification.best_threshold), said in the report."""
    f = np.asarray(float_emb, np.float64)
    q = np.asarray(int8_emb, np.float64)
    labels = np.asarray(labels)
    if f.shape != q.shape or f.ndim != 2 or len(labels) != len(f):
        raise ValueError(f"embeddings {f.shape} / {q.shape} and {len(labels)} labels disagree")
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    cos = np.einsum("nd,nd->n", f, q)
    i, j = np.triu_indices(len(f), 1)
    same = labels[i] == labels[j]
    s_f = np.einsum("nd,nd->n", f[i], f[j])
    s_q = np.einsum("nd,nd->n", q[i], q[j])
    if threshold is None:
        threshold = best_threshold(s_f, same)
        threshold_source = "best accuracy of the float scores on the gate pairs (no threshold " \
                           "in the metadata)"
    flips = int(np.count_nonzero((s_f >= threshold) != (s_q >= threshold)))
    worst = int(np.argmin(cos))
    g = EmbeddingGate(faces=len(f), pairs=len(s_f), same_pairs=int(same.sum()),
                      mean_cosine=float(cos.mean()), min_cosine=float(cos[worst]),
                      min_cosine_face=str(names[worst]) if names is not None else str(worst),
                      auc_float=roc_auc(s_f, same), auc_int8=roc_auc(s_q, same),
                      threshold=float(threshold), threshold_source=threshold_source,
                      flipped=flips, flip_rate=flips / len(s_f), failures=[])
    if not g.mean_cosine >= GATE_MIN_MEAN_COSINE:
        g.failures.append(f"mean cosine int8 vs float {g.mean_cosine:.4f} < "
                          f"{GATE_MIN_MEAN_COSINE} (minimum {g.min_cosine:.4f} on "
                          f"{g.min_cosine_face})")
    if not abs(g.auc_int8 - g.auc_float) <= GATE_MAX_AUC_CHANGE:
        g.failures.append(f"verification AUC {g.auc_int8:.4f} vs float {g.auc_float:.4f}: "
                          f"change {g.auc_int8 - g.auc_float:+.4f} beyond "
                          f"+-{GATE_MAX_AUC_CHANGE}")
    if not g.flip_rate <= GATE_MAX_FLIP_RATE:
        g.failures.append(f"{g.flipped} of {g.pairs} pair decisions flipped at threshold "
                          f"{g.threshold:.4f} ({g.flip_rate:.2%} > {GATE_MAX_FLIP_RATE:.0%})")
    return g


@dataclass
class MaskGate:
    faces: int
    channels: int
    mean_iou: float
    min_face_iou: float          # the worst face's mean over its channels
    min_face: str
    shown_agreement: Optional[float]  # share of explain's shown channels that stay (not gated)
    failures: List[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        shown = ("" if self.shown_agreement is None else
                 f"; {self.shown_agreement:.1%} of the {SHOWN_CHANNELS} channels explain shows "
                 "are the float model's")
        return (f"top-10% mask IoU int8 vs float {self.mean_iou:.4f} (worst face "
                f"{self.min_face_iou:.4f}, limit >= {GATE_MIN_MASK_IOU}){shown}")


def mask_iou(float_masks: np.ndarray, int8_masks: np.ndarray) -> np.ndarray:
    """(N, C) IoU of two (N, C, S, S) boolean mask stacks per face and channel; a channel empty
    in both (a dead channel keeps nothing) agrees (IoU 1)."""
    a = np.asarray(float_masks, bool)
    b = np.asarray(int8_masks, bool)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"masks {a.shape} / {b.shape}: expected two equal (N, C, S, S) shapes")
    inter = (a & b).sum((2, 3))
    union = (a | b).sum((2, 3))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def shown_agreement(float_maps: np.ndarray, int8_maps: np.ndarray,
                    table: Optional[Dict[str, Any]]) -> np.ndarray:
    """Per face, the share of the channels explain shows for the float target maps (N, C, n, n)
    (shown_channels with the export's part table) that it also shows for the int8 ones (1 when
    no channel fires on the float maps and none on the int8 ones)."""
    out = []
    for mf, mq in zip(float_maps, int8_maps):
        a = set(shown_channels(mf, table, SHOWN_CHANNELS))
        b = set(shown_channels(mq, table, SHOWN_CHANNELS))
        out.append(len(a & b) / len(a) if a else float(not b))
    return np.array(out)


def mask_gate(iou: np.ndarray, names: Optional[Sequence[str]] = None,
              shown: Optional[np.ndarray] = None) -> MaskGate:
    """The featuremap gate from the (N, C) mask IoUs (mask_iou) and, for the record, the
    shown-channel agreement per face (shown_agreement)."""
    iou = np.asarray(iou, np.float64)
    per_face = iou.mean(1)
    worst = int(np.argmin(per_face))
    g = MaskGate(faces=iou.shape[0], channels=iou.shape[1], mean_iou=float(iou.mean()),
                 min_face_iou=float(per_face[worst]),
                 min_face=str(names[worst]) if names is not None else str(worst),
                 shown_agreement=None if shown is None else float(np.mean(shown)), failures=[])
    if not g.mean_iou >= GATE_MIN_MASK_IOU:
        g.failures.append(f"top-10% mask IoU int8 vs float {g.mean_iou:.4f} < "
                          f"{GATE_MIN_MASK_IOU} (worst face {g.min_face_iou:.4f}: {g.min_face})")
    return g
