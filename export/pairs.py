"""Verify a pairs file with an exported model (onnxruntime + numpy + Pillow only).

    from export.pairs import read_pairs, verify_pairs
    pairs = read_pairs("pairs.txt", root="lfw/")     # LFW layout, or a plain list
    report = verify_pairs(FaceVerifier("out/"), pairs)   # per pair + accuracy / ROC AUC

Two layouts, told apart line by line:

- LFW's ``pairs.txt``: an optional header (``10 300``: folds and pairs per fold), then
  ``name n1 n2`` (the same person) or ``name1 n1 name2 n2`` (different people), the images
  ``root/name/name_000n.jpg``;
- a plain list: two image paths a line (tab-, comma- or space-separated; relative to ``root``,
  default the list's folder), with an optional third column, the label: 1 / same / true or
  0 / different / false.

With labels the report has the accuracy at the threshold and the ROC AUC; pairs whose images
cannot be read are skipped and listed, as zoo's batch tools do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Union

import numpy as np

from .batch import embed_images

__all__ = ["Pair", "read_pairs", "verify_pairs", "roc_auc"]

_TRUE, _FALSE = ("1", "same", "true", "yes"), ("0", "different", "false", "no", "-1")


@dataclass
class Pair:
    a: Path
    b: Path
    same: Optional[bool] = None   # the label, when the file gives one


def _fields(line: str) -> List[str]:
    for sep in ("\t", ","):
        if sep in line:
            return [f.strip() for f in line.split(sep)]
    return line.split()


def _label(text: str, where: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError(f"{where}: label {text!r} is not 1/0, same/different or true/false")


def _lfw_image(root: Path, name: str, n: str, ext: str) -> Path:
    return root / name / f"{name}_{int(n):04d}{ext}"


def read_pairs(path: Union[str, os.PathLike], root: Optional[Union[str, os.PathLike]] = None,
               ext: str = ".jpg") -> List[Pair]:
    """The pairs of a pairs file (LFW pairs.txt or a plain list, see the module docstring);
    ValueError naming the file and line for a line of neither layout."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pairs file")
    base = Path(root) if root is not None else path.parent
    pairs: List[Pair] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for k, line in enumerate(lines, 1):
        f = _fields(line)
        where = f"{path}:{k}"
        if not f or f[0].startswith("#"):
            continue
        if k == 1 and all(x.isdigit() for x in f) and len(f) <= 2:
            continue  # the LFW header: folds and pairs per fold
        if len(f) == 3 and f[1].isdigit() and f[2].isdigit():
            pairs.append(Pair(_lfw_image(base, f[0], f[1], ext),
                              _lfw_image(base, f[0], f[2], ext), True))
        elif len(f) == 4 and f[1].isdigit() and f[3].isdigit():
            pairs.append(Pair(_lfw_image(base, f[0], f[1], ext),
                              _lfw_image(base, f[2], f[3], ext), False))
        elif len(f) in (2, 3):
            pairs.append(Pair(base / f[0], base / f[1],
                              _label(f[2], where) if len(f) == 3 else None))
        else:
            raise ValueError(f"{where}: expected 'A B [label]' or LFW's 'name n1 n2' / "
                             f"'name1 n1 name2 n2', got {len(f)} fields")
    if not pairs:
        raise ValueError(f"{path}: no pairs in the file")
    return pairs


def roc_auc(scores: np.ndarray, same: np.ndarray) -> Optional[float]:
    """P(score of a same pair > score of a different pair), ties counting 1/2; None without
    both kinds of pairs."""
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    pos, neg = scores[same], scores[~same]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def verify_pairs(verifier, pairs: List[Pair], threshold: Optional[float] = None,
                 crop: Optional[str] = None,
                 progress: Union[bool, Callable[[int], None]] = False) -> dict:
    """Similarity and decision of every pair (each image embedded once); with labels, the
    accuracy at the threshold and the ROC AUC. ``threshold``: default the export's. Pairs with
    an image that could not be embedded are skipped and listed in ``skipped``."""
    th = threshold if threshold is not None else verifier.threshold
    if th is None:
        raise ValueError("the model carries no verification threshold (exported before "
                         "evaluation); pass --threshold")
    unique = sorted({str(p) for pair in pairs for p in (pair.a, pair.b)})
    missing = {p: "no such file" for p in unique if not Path(p).is_file()}
    emb = embed_images(verifier, [p for p in unique if p not in missing], crop=crop,
                       progress=progress)
    emb.skipped.update(missing)
    index = {p: i for i, p in enumerate(emb.paths)}
    rows, skipped = [], []
    for pair in pairs:
        a, b = str(pair.a), str(pair.b)
        if a not in index or b not in index:
            bad = a if a not in index else b
            skipped.append({"a": a, "b": b, "reason": f"{bad}: {emb.skipped.get(bad, '?')}"})
            continue
        s = float(np.dot(emb.vectors[index[a]].astype(np.float64), emb.vectors[index[b]]))
        rows.append({"a": a, "b": b, "similarity": s, "same": bool(s >= th),
                     **({"label": pair.same} if pair.same is not None else {})})
    report = {"model": emb.model_name, "export_id": emb.export_id, "threshold": float(th),
              "num_pairs": len(rows), "pairs": rows, "skipped": skipped}
    labelled = [r for r in rows if "label" in r]
    if labelled:
        scores = np.array([r["similarity"] for r in labelled])
        labels = np.array([r["label"] for r in labelled])
        report["num_labelled"] = len(labelled)
        report["accuracy"] = float(np.mean((scores >= th) == labels))
        report["auc"] = roc_auc(scores, labels)
    return report
