"""Why two faces match, or not, part by part: the evidence of ``verify(explain=True)``.

    r = FaceVerifier("out/").verify("a.jpg", "b.jpg", explain=True)
    ev = r.evidence                       # PairEvidence
    ev.parts[0].part, ev.parts[0].difference   # the part that made the most difference
    print(ev.table()); ev.render().save("why.png"); ev.to_dict()

Two views of one decision:
1. **Intervention** (what ``parts`` holds, first in the table and the picture): each part's
   share of 1 - similarity is its Shapley value in the game where hidden parts are filled on
   both faces (export.part_game). The shares of the 7 parts and of ``other`` (pixels of no part)
   sum to 1 - similarity. It answers "which part, hidden, changes the model's answer", for any
   model (it needs only embedding.onnx).
2. **Channels** (``channel_view``, an export.channel_evidence.ChannelEvidence): the exact split
   of the cosine over the target layer's channels, each channel labelled with the part its
   top-10% regions cover on THESE two faces. "What the ECLoss channels say"; needs head.onnx and
   a channel table. ``agree`` says whether both views put the same part first.
Each photo first goes through export.face_input (crop="auto": the detected face, or dlib's
aligned chip for an export with an alignment), so the game hides parts on what the model is
given. Part masks come from the detected face's landmarks in that view (or export.face_parts'
locator) unless given; given landmarks are in the photo's pixels and are mapped to the view.
Must not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .channel_evidence import ChannelEvidence, ChannelExplainer, MissingPartTableError
from .detector import DETECTOR_DIR
from .drawing import no_minus_zero as _z
from .face_input import FaceInput, FacePreparer
from .face_parts import FaceLandmarks, FaceLocator, read_landmarks
from .images import ImageLike, normalise, resize_square
from .match_picture import render_pair_evidence
from .model_dir import HEAD_FILE, ExportedModel
from .model_files import EMBEDDING_FILE, EMBEDDING_OUTPUT
from .part_game import ESTIMATORS, FILL_SIGMA, OTHER, PLAYERS, GameResult, play

__all__ = ["PartEvidence", "PairEvidence", "MatchExplainer"]


EMBED_BATCH = 64               # images per embedding.onnx run while playing the game


@dataclass
class PartEvidence:
    part: str
    difference: float            # Shapley share of 1 - similarity (intervention)
    hidden_similarity: float     # the similarity with this part hidden on both faces
    channel_difference: Optional[float] = None    # the channel view's share of 1 - similarity
    channel_contribution: Optional[float] = None  # the channel view's share of the similarity
    channels: List[int] = field(default_factory=list)  # channels on this part on this pair

    def to_dict(self) -> Dict[str, Any]:
        return {"part": self.part, "difference": self.difference,
                "hidden_similarity": self.hidden_similarity,
                "channel_difference": self.channel_difference,
                "channel_contribution": self.channel_contribution,
                "channels": list(self.channels)}


@dataclass
class PairEvidence:
    """sum(p.difference for p in parts) + other == 1 - similarity (exact up to float
    rounding, whatever the estimator: both are efficient)."""
    similarity: float
    parts: List[PartEvidence]     # the 7 parts, largest difference first
    other: float                  # the share of the pixels of no part (background, neck...)
    estimator: str
    landmarks: Tuple[str, str]    # where each face's landmarks came from (face_parts sources)
    game: GameResult = field(repr=False, default=None)
    channel_view: Optional[ChannelEvidence] = field(default=None, repr=False)
    threshold: Optional[float] = None
    model_name: Optional[str] = None
    views: Optional[Tuple[Image.Image, Image.Image]] = field(default=None, repr=False)
    part_masks: Optional[np.ndarray] = field(default=None, repr=False)  # (2, 7, S, S)

    @property
    def same(self) -> Optional[bool]:
        return None if self.threshold is None else bool(self.similarity >= self.threshold)

    @property
    def agree(self) -> Optional[bool]:
        """Do the two views put the same part first by difference (None without channels)?"""
        if self.channel_view is None:
            return None
        by_channels = max(self.parts, key=lambda p: p.channel_difference or 0.0)
        return by_channels.part == self.parts[0].part

    def part(self, name: str) -> PartEvidence:
        for p in self.parts:
            if p.part == name:
                return p
        raise KeyError(f"no part {name!r}; parts: {[p.part for p in self.parts]}")

    def to_dict(self) -> Dict[str, Any]:
        d = {"similarity": self.similarity, "threshold": self.threshold, "same": self.same,
             "parts": [p.to_dict() for p in self.parts], "other": self.other,
             "estimator": self.estimator, "landmarks": list(self.landmarks),
             "agree": self.agree,
             "method": "Shapley values of the parts in the hide-and-compare game "
                       "(docs/export.md, Explaining a match)"}
        if self.channel_view is not None:
            d["channel_view"] = self.channel_view.to_dict()
        if self.model_name is not None:
            d["model_name"] = self.model_name
        return d

    def table(self) -> str:
        """The per-part table the CLI prints: largest difference first, then ``other`` and the
        total the difference column sums to."""
        head = (f"{'part':<10} {'difference':>11} {'hidden sim':>11} {'channels say':>13}  "
                "channels on this part")
        lines = [head, "-" * len(head)]
        for p in self.parts:
            ch = "" if p.channel_difference is None else f"{_z(p.channel_difference):+.4f}"
            shown = ", ".join(str(c) for c in p.channels[:5])
            more = f", +{len(p.channels) - 5} more" if len(p.channels) > 5 else ""
            lines.append(f"{p.part:<10} {_z(p.difference):>+11.4f} {p.hidden_similarity:>11.4f} "
                         f"{ch:>13}  {shown}{more}")
        lines.append(f"{OTHER:<10} {_z(self.other):>+11.4f} {'':>11} {'':>13}  pixels of no part")
        lines.append("-" * len(head))
        lines.append(f"{'total':<10} {1.0 - self.similarity:>+11.4f}  = 1 - similarity "
                     f"{self.similarity:.4f}")
        note = f"shares: {self.estimator} Shapley values; landmarks: {self.landmarks[0]} | " \
               f"{self.landmarks[1]}"
        if self.agree is not None:
            note += f"; channels name the same part first: {'yes' if self.agree else 'no'}"
        lines.append(note)
        return "\n".join(lines)

    def render(self) -> Image.Image:
        if self.views is None or self.part_masks is None:
            raise ValueError("this PairEvidence carries no images to draw")
        return render_pair_evidence(self)


class MatchExplainer:
    """The evidence of image pairs from ``model_dir``: embedding.onnx for the intervention view,
    featuremap.onnx + head.onnx + the channel table for the channel view (skipped, with
    ``channel_view`` None, when the export has no head.onnx or no table)."""

    def __init__(self, model_dir, device: str = "auto", threads: Optional[int] = None,
                 embedding: Optional[ExportedModel] = None, estimator: str = "kernel",
                 fill_sigma: float = FILL_SIGMA, fill: str = "mean",
                 faces: Optional[FacePreparer] = None):
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; use one of {ESTIMATORS}")
        folder = Path(model_dir)
        self.model = embedding or ExportedModel(folder, EMBEDDING_FILE, device, threads)
        self.estimator = estimator
        self.fill_sigma = fill_sigma
        self.fill = fill
        self.locator = FaceLocator(folder / DETECTOR_DIR, threads=threads)
        self.faces = faces or FacePreparer(folder, self.model.metadata, threads)
        self.channels: Optional[ChannelExplainer] = None
        self.channels_missing: Optional[str] = None
        if not (folder / HEAD_FILE).is_file():
            self.channels_missing = f"{folder / HEAD_FILE} is missing"
        else:
            try:
                self.channels = ChannelExplainer(folder, device, threads)
            except MissingPartTableError as exc:  # no channel table: intervention view only
                self.channels_missing = str(exc)
        self.input_size = self.model.input_size

    def _network_input(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float images in [0, 255] -> (N, 3, H, W) float32 network inputs (the
        model's own preprocessing after the resize; per pixel, so the game may fill hidden
        pixels after it)."""
        m = self.model
        return normalise(images, m.mean, m.std, m.channel_order)

    def _embed_inputs(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) network inputs -> (N, D) embeddings, EMBED_BATCH images per run."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = [self.model.run(x[i:i + EMBED_BATCH], [EMBEDDING_OUTPUT])[0]
               for i in range(0, len(x), EMBED_BATCH)]
        return np.concatenate(out)

    def fill_colour(self) -> np.ndarray:
        """The model's mean colour in [0, 255] (what a fully hidden image shows)."""
        mean = np.asarray(self.model.mean, np.float64) * 255.0
        return mean[::-1] if self.model.channel_order == "BGR" else mean

    def locate_parts(self, images: Sequence[Image.Image], landmarks: Optional[Sequence] = None
                     ) -> Tuple[List[FaceLandmarks], np.ndarray]:
        """Each face's landmarks (given or found) and its (7, S, S) part masks at the input
        size, stacked: (2, 7, S, S) for a pair."""
        if landmarks is not None and len(landmarks) != len(images):
            raise ValueError("landmarks= takes a pair (landmarks of face A, of face B)")
        given = landmarks if landmarks is not None else [None] * len(images)
        faces = [self.locator.locate(im, lm) for im, lm in zip(images, given)]
        return faces, np.stack([f.part_masks(self.input_size) for f in faces])

    def input_landmarks(self, inputs: Sequence[FaceInput], landmarks: Optional[Sequence] = None
                        ) -> List[Optional[np.ndarray]]:
        """Each input's 68 points in its own pixels: given ones (in the photo's pixels) mapped
        into the view, else the detected face's; None where neither (the locator decides)."""
        if landmarks is not None and len(landmarks) != len(inputs):
            raise ValueError("landmarks= takes a pair (landmarks of face A, of face B)")
        given = landmarks if landmarks is not None else [None] * len(inputs)
        return [f.map_points(read_landmarks(lm)) if lm is not None else None
                for f, lm in zip(inputs, given)]

    def _landmarks(self, face: FaceInput, points: Optional[np.ndarray], given: bool
                   ) -> FaceLandmarks:
        size = (face.image.width, face.image.height)
        if given:
            return FaceLandmarks(points, "given", size)
        if face.landmarks is not None:
            return FaceLandmarks(face.landmarks, "detected", size, face.faces_found or 0)
        return self.locator.locate(face.image)

    def explain(self, img_a: ImageLike, img_b: ImageLike, threshold: Optional[float] = None,
                landmarks: Optional[Sequence] = None, crop: str = "auto") -> PairEvidence:
        """The evidence of one pair. landmarks: None, or (landmarks_a, landmarks_b), each None
        (found by the runtime), a (68, 2) array or a landmark file, in that image's pixels.
        crop: what the model is given of each photo (export.face_input; FaceInputs are used
        as they are)."""
        inputs = self.faces.prepare_all([img_a, img_b], crop)
        rgb = [f.image for f in inputs]
        points = self.input_landmarks(inputs, landmarks)
        faces = [self._landmarks(f, p, lm is not None) for f, p, lm in
                 zip(inputs, points, landmarks if landmarks is not None else (None, None))]
        masks = np.stack([f.part_masks(self.input_size) for f in faces])
        views = tuple(resize_square(im, self.input_size) for im in rgb)
        arrays = [np.asarray(v, dtype=np.float64) for v in views]
        game = play(self._embed_inputs, arrays[0], arrays[1], masks[0], masks[1],
                    self.fill_colour(), self.estimator, self.fill_sigma, self.fill,
                    preprocess=self._network_input)
        diff = game.difference
        channel_view = None
        if self.channels is not None:
            channel_view = self.channels.explain(rgb[0], rgb[1], threshold, part_masks=masks)
        parts = []
        for i, name in enumerate(PLAYERS[:-1]):
            p = PartEvidence(part=name, difference=float(diff[i]),
                             hidden_similarity=game.hidden_similarity(i))
            if channel_view is not None:
                cp = channel_view.part(name)
                p.channel_difference, p.channel_contribution = cp.difference, cp.contribution
                p.channels = list(cp.channels)
            parts.append(p)
        parts.sort(key=lambda p: -p.difference)
        return PairEvidence(similarity=game.similarity, parts=parts, other=float(diff[-1]),
                            estimator=self.estimator,
                            landmarks=(faces[0].source, faces[1].source), game=game,
                            channel_view=channel_view, threshold=threshold,
                            model_name=self.model.metadata.get("model_name"), views=views,
                            part_masks=masks)
