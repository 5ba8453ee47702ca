"""Face verification with an exported model: embeddings and same / different decisions from
``embedding.onnx`` (onnxruntime + numpy + Pillow only).

    from export.verifier import FaceVerifier
    v = FaceVerifier("out/")                      # reads out/embedding.onnx
    r = v.verify("a.jpg", "b.jpg")                # r.similarity, r.same, r.threshold
    E = v.embed([img1, img2, ...])                # (N, D) float32, L2-normalised
    ev = v.verify("a.jpg", "b.jpg", explain=True).evidence   # per-part evidence
    print(ev.table()); ev.render().save("why.png")

Images: file paths, PIL images or numpy arrays, preprocessed as in training (export.images).
verify(explain=True) asks export.match_evidence why the two faces match or not.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Union

import numpy as np

from .images import ImageLike, as_list
from .match_evidence import MatchExplainer, PairEvidence
from .model_dir import ExportedModel, ModelDirError, model_file
from .model_files import EMBEDDING_FILE, EMBEDDING_OUTPUT

__all__ = ["FaceVerifier", "VerificationResult", "check_threshold"]


def check_threshold(value: Any, where: str = "threshold") -> float:
    """A verification threshold as a float: a finite cosine similarity in [-1, 1], else
    ValueError naming ``where``."""
    try:
        th = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        th = math.nan
    if not (math.isfinite(th) and -1 <= th <= 1):
        raise ValueError(f"{where} must be a cosine similarity in [-1, 1], got {value!r}")
    return th


@dataclass
class VerificationResult:
    similarity: float   # cosine similarity of the two L2-normalised embeddings, in [-1, 1]
    threshold: float    # same person when similarity >= threshold
    same: bool
    evidence: Optional[PairEvidence] = None  # verify(explain=True): per-part evidence

    def __str__(self) -> str:
        verdict = "same person" if self.same else "different people"
        return (f"similarity {self.similarity:.4f}  threshold {self.threshold:.4f}  -> "
                f"{verdict}")


class FaceVerifier:
    """Embeddings and same/different decisions from ``model_dir/embedding.onnx``.

    threshold: overrides the metadata's threshold (chosen at evaluation by the 10-fold protocol).
    device: "auto" (CUDA when a GPU and the CUDA provider are present), "cpu" or "cuda".
    threads: onnxruntime intra-op threads (default: onnxruntime's, one per core).
    precision: "float" (embedding.onnx) or "int8" (embedding-int8.onnx from `python -m
    zoo.exporting --int8`, gated at export against the float model; ModelDirError when the
    folder has none).
    """

    def __init__(self, model_dir: Union[str, os.PathLike], threshold: Optional[float] = None,
                 device: str = "auto", threads: Optional[int] = None, precision: str = "float",
                 estimator: str = "kernel"):
        self.model = ExportedModel(model_dir, model_file(EMBEDDING_FILE, precision), device,
                                   threads)
        self.precision = precision
        self.metadata = self.model.metadata
        self.input_size = self.model.input_size
        self.providers = self.model.providers
        self._open_pairs = lambda: MatchExplainer(model_dir, device, threads,
                                                  embedding=self.model, estimator=estimator)
        self._pairs: Optional[MatchExplainer] = None  # opened by the first verify(explain=True)
        if threshold is not None:
            threshold = check_threshold(threshold)
        elif "threshold" in self.metadata:
            try:
                threshold = check_threshold(self.metadata["threshold"], "metadata threshold")
            except ValueError as exc:
                raise ModelDirError(f"{self.model.path}: {exc}") from None
        self.threshold = threshold

    def pair_channels_missing(self) -> Optional[str]:
        """Why verify(explain=True) has no channel view (None when it has one, or before the
        first explained verify)."""
        return None if self._pairs is None else self._pairs.channels_missing

    def embed(self, images: Union[ImageLike, Iterable[ImageLike]],
              batch_size: int = 32) -> np.ndarray:
        """(N, D) float32 L2-normalised embeddings of one image or a list of images."""
        if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        items = as_list(images)
        if not items:
            return np.zeros((0, int(self.metadata.get("embedding_dim", 0))), np.float32)
        out = []
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            x = self.model.preprocess(chunk, first_index=start)
            out.append(self.model.run(x, [EMBEDDING_OUTPUT])[0])
        return np.concatenate(out).astype(np.float32, copy=False)

    def similarity(self, img_a: ImageLike, img_b: ImageLike) -> float:
        e = self.embed([img_a, img_b]).astype(np.float64)
        return float(np.dot(e[0], e[1]))

    def verify(self, img_a: ImageLike, img_b: ImageLike, threshold: Optional[float] = None,
               explain: bool = False, landmarks=None) -> VerificationResult:
        """Similarity and same/different decision (similarity >= threshold).

        explain=True also returns the per-part evidence (result.evidence, a PairEvidence,
        export.match_evidence): each part's share of 1 - similarity from hiding it on both faces
        (any exported model), and the channel view when the export has head.onnx and a channel
        table. The similarity is then the game's v(all), embedding.onnx's on the same pixels.
        landmarks: (a, b), each None (found by the runtime), a (68, 2) array or a .pts file."""
        th = check_threshold(threshold) if threshold is not None else self.threshold
        if th is None:
            raise ValueError(f"{self.model.path}: the model carries no verification threshold "
                             "(exported before evaluation); pass threshold=")
        if not explain:
            s = self.similarity(img_a, img_b)
            return VerificationResult(similarity=s, threshold=float(th), same=bool(s >= th))
        if self._pairs is None:
            self._pairs = self._open_pairs()
        ev = self._pairs.explain(img_a, img_b, threshold=float(th), landmarks=landmarks)
        return VerificationResult(similarity=ev.similarity, threshold=float(th),
                                  same=bool(ev.similarity >= th), evidence=ev)
