"""Face verification with an exported model: embeddings and same / different decisions from
``embedding.onnx`` (onnxruntime + numpy + Pillow only).

    from export.verifier import FaceVerifier
    v = FaceVerifier("out/")                      # reads out/embedding.onnx
    r = v.verify("a.jpg", "b.jpg")                # r.similarity, r.same, r.threshold, r.inputs
    E = v.embed([img1, img2, ...])                # (N, D) float32, L2-normalised
    faces = v.prepare([img1, img2])               # FaceInput each: what the model is given
    ev = v.verify("a.jpg", "b.jpg", explain=True).evidence   # per-part evidence
    print(ev.table()); ev.render().save("why.png")

Images: file paths, PIL images or numpy arrays. ``crop`` (export.face_input): "auto" (default)
detects the face and uses it (a photo that is already a face crop as it is; an export with an
alignment, dlib's ResNet, gets the aligned chip), "always" crops the largest face, "never" uses
the image as given; then the model's preprocessing (export.images).
verify(explain=True) asks export.match_evidence why the two faces match or not.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Tuple, Union

import numpy as np

from .face_input import FaceInput, FacePreparer, check_crop
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
    inputs: Tuple[FaceInput, ...] = ()      # what the model was given of each image

    @property
    def notes(self) -> List[str]:
        """The warnings of the face detection ("no face found", "3 faces found"), one per
        image that has one, each naming the image."""
        return [f"{f.name}: {f.note}" for f in self.inputs if f.note]

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
        self.faces = FacePreparer(model_dir, self.metadata, threads)
        self._open_pairs = lambda: MatchExplainer(model_dir, device, threads,
                                                  embedding=self.model, estimator=estimator,
                                                  faces=self.faces)
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

    def prepare(self, images: Union[ImageLike, FaceInput, Iterable[ImageLike]],
                crop: str = "auto") -> List[FaceInput]:
        """What the model is given of each image (export.face_input): the face found, how it
        was used, and a note when no face or several faces were found."""
        check_crop(crop)
        items = [images] if isinstance(images, FaceInput) else as_list(images)
        return self.faces.prepare_all(items, crop)

    def embed(self, images: Union[ImageLike, FaceInput, Iterable[ImageLike]],
              batch_size: int = 32, crop: str = "auto") -> np.ndarray:
        """(N, D) float32 L2-normalised embeddings of one image or a list of images (or of
        FaceInputs from prepare(), used as they are). crop: "auto", "always" or "never"
        (export.face_input); prepare() says what was found."""
        if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        check_crop(crop)
        items = [images] if isinstance(images, FaceInput) else as_list(images)
        if not items:
            return np.zeros((0, int(self.metadata.get("embedding_dim", 0))), np.float32)
        out = []
        for start in range(0, len(items), batch_size):
            chunk = [f.image for f in self.faces.prepare_all(items[start:start + batch_size],
                                                             crop, start)]
            x = self.model.preprocess(chunk, first_index=start)
            out.append(self.model.run(x, [EMBEDDING_OUTPUT])[0])
        return np.concatenate(out).astype(np.float32, copy=False)

    def similarity(self, img_a: ImageLike, img_b: ImageLike, crop: str = "auto") -> float:
        e = self.embed([img_a, img_b], crop=crop).astype(np.float64)
        return float(np.dot(e[0], e[1]))

    def verify(self, img_a: ImageLike, img_b: ImageLike, threshold: Optional[float] = None,
               explain: bool = False, landmarks=None, crop: str = "auto") -> VerificationResult:
        """Similarity and same/different decision (similarity >= threshold).

        explain=True also returns the per-part evidence (result.evidence, a PairEvidence,
        export.match_evidence): each part's share of 1 - similarity from hiding it on both faces
        (any exported model), and the channel view when the export has head.onnx and a channel
        table. The similarity is then the game's v(all), embedding.onnx's on the same pixels.
        landmarks: (a, b), each None (found by the runtime), a (68, 2) array or a .pts file.
        crop: "auto" (detect; default), "always" or "never" (export.face_input); the result's
        ``inputs`` say what the model was given and ``notes`` when no or several faces were
        found."""
        th = check_threshold(threshold) if threshold is not None else self.threshold
        if th is None:
            raise ValueError(f"{self.model.path}: the model carries no verification threshold "
                             "(exported before evaluation); pass threshold=")
        inputs = tuple(self.prepare([img_a, img_b], crop))
        if not explain:
            s = self.similarity(inputs[0], inputs[1])
            return VerificationResult(similarity=s, threshold=float(th), same=bool(s >= th),
                                      inputs=inputs)
        if self._pairs is None:
            self._pairs = self._open_pairs()
        ev = self._pairs.explain(inputs[0], inputs[1], threshold=float(th), landmarks=landmarks)
        return VerificationResult(similarity=ev.similarity, threshold=float(th),
                                  same=bool(ev.similarity >= th), evidence=ev, inputs=inputs)
