"""The channel view of a match: the similarity split exactly over the target layer's channels.

    from export.channel_evidence import ChannelExplainer
    ev = ChannelExplainer("out/").explain("a.jpg", "b.jpg")   # ChannelEvidence
    print(ev.table())                     # the per-part table the CLI prints
    ev.render().save("why.png")           # faces, heatmaps per part, bar chart
    ev.to_dict()                          # the same numbers, JSON-serialisable

The method (docs/export.md, "Explaining a match"). After the ECLoss target layer the embedding
head is affine at inference (max-pool -> linear -> BatchNorm1d), so with flip test-time
augmentation a face's embedding before normalisation is e = sum_c T_c + beta, where T_c is
channel c's term (its pooled maps, of the image and its mirror, minus the export's baseline -
the reference faces' mean, metadata evidence_baseline - through the folded head) and beta the
bias (one per view). head.onnx computes T and beta. For faces a and b,
with n = max(|e|, 1e-12) as in the embedding's L2 normalisation,

    cos(a, b) = e_a . e_b / (n_a n_b) = sum_c k_c + k_beta,
    k_c = (T_c(a) . e_b + e_a . T_c(b)) / (2 n_a n_b),   k_beta = beta . (e_a + e_b) / (2 n_a n_b),

exactly (the symmetric split of the bilinear form: the Shapley value of each channel in the
game S -> (sum_S T(a)) . (sum_S T(b)), scaled). A part's contribution is the sum of k_c over
its channels; channels of no part (or flagged as firing at a fixed cell) and the bias make the
residual. part_similarity is the cosine of the part's own embedding terms on the two faces.
difference is the part's exact Shapley share of 1 - cos in the game where the parts that are
not "in" take the mean of the two faces' terms: a part whose terms are the same on both faces
gets exactly 0, and the shares sum to 1 - cos.

Runs featuremap.onnx (target maps, heatmaps) and head.onnx; needs the channel -> part table
the export embeds (channel_parts.json from zoo.evaluate). Must not import torch.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .channel_picture import CHANNELS_SHOWN, render_channel_evidence
from .channel_table import read_parts_file, validate_parts
from .drawing import no_minus_zero as _z
from .face_parts import PART_IOU_FLOOR, channel_part_ious
from .images import ImageLike, load_image, resize_square
from .model_dir import (
    CHANNEL_TERMS_OUTPUT,
    HEAD_BIAS_OUTPUT,
    HEAD_FILE,
    ExportedModel,
    ModelDirError,
)
from .model_files import FEATURE_OUTPUT, FEATUREMAP_FILE, HEATMAP_OUTPUT, MASK_OUTPUT, PARTS_FILE
from .part_game import shapley_exact

__all__ = ["ChannelPartEvidence", "ChannelEvidence", "ChannelExplainer", "decompose", "part_groups",
           "pair_part_groups", "MissingPartTableError",
           "NORM_EPS", "MAX_SHAPLEY_GROUPS"]

NORM_EPS = 1e-12            # F.normalize's eps: the embedding is e / max(|e|, eps)
MAX_SHAPLEY_GROUPS = 12     # difference: 2^groups coalitions (parts, unassigned, bias)
UNASSIGNED = -1


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------

@dataclass
class ChannelPartEvidence:
    part: str
    contribution: float           # the part's share of the cosine (sum of its channels' k_c)
    part_similarity: float        # cosine of the part's embedding terms on the two faces
    difference: float             # the part's share of 1 - cosine (0: same on both faces)
    channels: List[int]           # the part's channels, largest contribution first
    channel_contributions: List[float]  # k_c of those channels, same order

    def to_dict(self) -> Dict[str, Any]:
        return {"part": self.part, "contribution": self.contribution,
                "part_similarity": self.part_similarity, "difference": self.difference,
                "channels": list(self.channels),
                "channel_contributions": list(self.channel_contributions)}


@dataclass
class ChannelEvidence:
    """Per-part evidence of one verification (see the module docstring for the method).

    sum(p.contribution for p in parts) + residual == similarity, and
    sum(p.difference for p in parts) + residual_difference == 1 - similarity (exact up to
    float rounding; the second needs e_a + e_b != 0, i.e. any two real faces)."""
    similarity: float
    parts: List[ChannelPartEvidence]         # one per part of the table, largest contribution first
    residual: float                   # bias + unassigned: what no part explains
    bias: float                       # the head bias's share of the cosine
    unassigned: float                 # the share of channels of no part / fixed-cell channels
    unassigned_channels: List[int]
    residual_difference: float        # the unassigned channels' share of 1 - cosine
    threshold: Optional[float] = None
    model_name: Optional[str] = None
    # what render() draws: the two faces as the network saw them, and for the shown channels
    # of each part their heatmaps / top-10% masks on both faces: {channel: (2, S, S)}
    views: Optional[Tuple[Image.Image, Image.Image]] = field(default=None, repr=False)
    heatmaps: Dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    masks: Dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def same(self) -> Optional[bool]:
        return None if self.threshold is None else bool(self.similarity >= self.threshold)

    def part(self, name: str) -> ChannelPartEvidence:
        for p in self.parts:
            if p.part == name:
                return p
        raise KeyError(f"no part {name!r}; parts: {[p.part for p in self.parts]}")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable: the numbers of table(), unrounded."""
        d = {"similarity": self.similarity, "threshold": self.threshold, "same": self.same,
             "residual": self.residual, "bias": self.bias, "unassigned": self.unassigned,
             "unassigned_channels": list(self.unassigned_channels),
             "residual_difference": self.residual_difference,
             "parts": [p.to_dict() for p in self.parts],
             "method": "symmetric split of the cosine of the flip-TTA embeddings into "
                       "per-channel terms (docs/export.md, Explaining a match)"}
        if self.model_name is not None:
            d["model_name"] = self.model_name
        return d

    def table(self, channels: int = CHANNELS_SHOWN) -> str:
        """The per-part table (4 decimals): one row per part, largest contribution first, then
        the residual and the totals the columns sum to."""
        head = (f"{'part':<10} {'contribution':>12} {'part sim':>9} {'difference':>11}  "
                "strongest channels (contribution)")
        lines = [head, "-" * len(head)]
        for p in self.parts:
            shown = ", ".join(f"{c} ({_z(k):+.4f})" for c, k in
                              zip(p.channels[:channels], p.channel_contributions[:channels]))
            more = f", +{len(p.channels) - channels} more" if len(p.channels) > channels else ""
            lines.append(f"{p.part:<10} {_z(p.contribution):>+12.4f} {_z(p.part_similarity):>9.4f} "
                         f"{_z(p.difference):>+11.4f}  {shown or 'no channels'}{more}")
        lines.append(f"{'residual':<10} {_z(self.residual):>+12.4f} {'':>9} "
                     f"{_z(self.residual_difference):>+11.4f}  head bias {_z(self.bias):+.4f}, "
                     f"{len(self.unassigned_channels)} channels of no part "
                     f"{_z(self.unassigned):+.4f}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<10} {self.similarity:>+12.4f} {'':>9} "
                     f"{1.0 - self.similarity:>+11.4f}  = similarity | 1 - similarity")
        return "\n".join(lines)

    def render(self, img_a: Optional[ImageLike] = None,
               img_b: Optional[ImageLike] = None) -> Image.Image:
        """The picture: the two faces side by side; per part (largest contribution first) the
        top-10% regions of its strongest channels on both faces, and a bar of its contribution
        on one axis with the residual's, so the bars sum to the similarity. img_a / img_b
        replace the faces drawn (default: the images as the network saw them)."""
        views = self.views
        if img_a is not None or img_b is not None:
            if img_a is None or img_b is None:
                raise ValueError("render() takes both images or neither")
            size = views[0].size[0] if views else 224
            views = (resize_square(load_image(img_a, 0), size),
                     resize_square(load_image(img_b, 1), size))
        if views is None:
            raise ValueError("this ChannelEvidence carries no images (made by decompose()); pass "
                             "render(img_a, img_b)")
        return render_channel_evidence(self, views)


# ----------------------------------------------------------------------------------------------
# the decomposition (numpy, float64)
# ----------------------------------------------------------------------------------------------

def part_groups(table: Dict[str, Any]) -> np.ndarray:
    """Each channel's group for the decomposition: its part index from the table, -1 for no
    part and for channels the evaluation flagged as firing at a fixed cell whatever the input
    (channel_fixed): their term is about the same on every face, like the bias."""
    groups = np.asarray(table["channel_part"], dtype=np.int64).copy()
    fixed = table.get("channel_fixed")
    if fixed is not None:
        groups[np.asarray(fixed, dtype=np.float64) > 0] = UNASSIGNED
    return groups


def pair_part_groups(masks: np.ndarray, part_masks: np.ndarray,
                     fixed: Optional[Sequence[float]] = None,
                     floor: float = PART_IOU_FLOOR) -> np.ndarray:
    """Each channel's part on one pair: the part whose masks its top-10% regions overlap most
    on the two faces (mean IoU over both), -1 when that mean IoU is below ``floor`` or the
    channel was flagged as firing at a fixed cell. masks (2, C, S, S), part_masks (2, P, S, S)."""
    iou = (channel_part_ious(masks[0], part_masks[0])
           + channel_part_ious(masks[1], part_masks[1])) / 2
    groups = np.where(iou.max(1) >= floor, iou.argmax(1), UNASSIGNED)
    if fixed is not None:
        groups[np.asarray(fixed, dtype=np.float64) > 0] = UNASSIGNED
    return groups


def _unit_cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise x . y / (max(|x|, eps) max(|y|, eps)): the cosine of F.normalize'd vectors."""
    nx = np.maximum(np.linalg.norm(x, axis=-1), NORM_EPS)
    ny = np.maximum(np.linalg.norm(y, axis=-1), NORM_EPS)
    return np.sum(x * y, axis=-1) / (nx * ny)


def _difference_shares(delta: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Exact Shapley values of 1 - v(S) for the groups (rows of ``delta``), where v(S) is the
    cosine of centre + sum_S delta_g and centre - sum_S delta_g: the groups in S take each
    face's own terms, the others the mean of the two faces' terms. v(empty) = 1 (identical
    embeddings, unless centre = 0) and v(all) = cos(a, b). Enumerates all 2^G coalitions."""
    g = len(delta)
    ids = np.arange(2 ** g)
    member = (ids[:, None] >> np.arange(g)) & 1                     # (2^G, G)
    moved = member.astype(np.float64) @ delta                         # (2^G, D)
    v = _unit_cos(centre + moved, centre - moved)
    return shapley_exact(member.astype(bool), 1.0 - v)


def decompose(terms_a: np.ndarray, terms_b: np.ndarray, bias_a: np.ndarray, bias_b: np.ndarray,
              groups: Sequence[int], part_names: Sequence[str]) -> ChannelEvidence:
    """The evidence of a pair from its embedding terms: terms_* (C, D) per-channel terms and
    bias_* (D,) of each face's embedding before normalisation (e = terms.sum(0) + bias);
    groups (C,): each channel's part index into part_names, -1 for none (part_groups)."""
    ta = np.asarray(terms_a, dtype=np.float64)
    tb = np.asarray(terms_b, dtype=np.float64)
    ba = np.asarray(bias_a, dtype=np.float64).reshape(-1)
    bb = np.asarray(bias_b, dtype=np.float64).reshape(-1)
    groups = np.asarray(groups, dtype=np.int64)
    if ta.ndim != 2 or ta.shape != tb.shape or ba.shape != (ta.shape[1],) or ba.shape != bb.shape:
        raise ValueError(f"terms must be (C, D) for both faces and biases (D,), got "
                         f"{ta.shape}, {tb.shape}, {ba.shape}, {bb.shape}")
    if groups.shape != (ta.shape[0],):
        raise ValueError(f"{ta.shape[0]} channels but {groups.shape} part assignments")
    n_parts = len(part_names)
    if groups.size and (groups.min() < UNASSIGNED or groups.max() >= n_parts):
        raise ValueError(f"part indices must be -1 or 0..{n_parts - 1}")
    if n_parts + 2 > MAX_SHAPLEY_GROUPS:
        raise ValueError(f"{n_parts} parts: the difference shares enumerate 2^(parts + 2) "
                         f"coalitions; at most {MAX_SHAPLEY_GROUPS - 2} parts are supported")
    if not (np.isfinite(ta).all() and np.isfinite(tb).all() and np.isfinite(ba).all()
            and np.isfinite(bb).all()):
        raise ValueError("embedding terms are not finite")
    ea, eb = ta.sum(0) + ba, tb.sum(0) + bb
    na = max(float(np.linalg.norm(ea)), NORM_EPS)
    nb = max(float(np.linalg.norm(eb)), NORM_EPS)
    scale = 2.0 * na * nb
    per_channel = (ta @ eb + tb @ ea) / scale                            # k_c
    bias_share = float((ba @ eb + ea @ bb) / scale)
    similarity = float(ea @ eb / (na * nb))

    # group vectors: parts 0..P-1, then the unassigned channels (their own player)
    onehot = (groups[None, :] == np.arange(-1, n_parts)[:, None]).astype(np.float64)  # (P+1, C)
    ga, gb = onehot @ ta, onehot @ tb                                    # row 0: unassigned
    delta = np.concatenate([ga[1:], ga[:1], [ba]]) - np.concatenate([gb[1:], gb[:1], [bb]])
    shares = _difference_shares(delta / 2.0, (ea + eb) / 2.0)            # parts, unassigned, bias

    parts = []
    for k, name in enumerate(part_names):
        chans = np.flatnonzero(groups == k)
        order = chans[np.argsort(-per_channel[chans], kind="stable")]
        both = np.linalg.norm(ga[k + 1]) > 0 and np.linalg.norm(gb[k + 1]) > 0
        parts.append(ChannelPartEvidence(
            part=str(name), contribution=float(per_channel[chans].sum()),
            part_similarity=float(np.clip(_unit_cos(ga[k + 1], gb[k + 1]), -1, 1)) if both
            else 0.0,
            difference=float(shares[k]), channels=[int(c) for c in order],
            channel_contributions=[float(per_channel[c]) for c in order]))
    parts.sort(key=lambda p: -p.contribution)
    unassigned = np.flatnonzero(groups == UNASSIGNED)
    unassigned_share = float(per_channel[unassigned].sum())
    return ChannelEvidence(similarity=similarity, parts=parts,
                        residual=bias_share + unassigned_share, bias=bias_share,
                        unassigned=unassigned_share,
                        unassigned_channels=[int(c) for c in unassigned],
                        residual_difference=float(shares[n_parts] + shares[n_parts + 1]))


# ----------------------------------------------------------------------------------------------
# from images: featuremap.onnx + head.onnx
# ----------------------------------------------------------------------------------------------

class MissingPartTableError(ModelDirError):
    """The export has no channel -> part table, so the channel view cannot be split by part."""


class ChannelExplainer:
    """Per-part evidence of image pairs from ``model_dir``'s featuremap.onnx and head.onnx.

    parts: a channel -> part table (dict or JSON path) overriding the one in the metadata.
    FaceVerifier.verify(..., explain=True) uses one; it is also usable on its own."""

    def __init__(self, model_dir: Union[str, os.PathLike], device: str = "auto",
                 threads: Optional[int] = None,
                 parts: Optional[Union[Dict[str, Any], str, os.PathLike]] = None):
        folder = Path(model_dir)
        head_path = folder / HEAD_FILE
        if folder.is_dir() and not head_path.is_file():
            raise ModelDirError(f"{head_path}: missing; this export predates per-part evidence "
                                "(verify --explain). Export the model again: python -m "
                                f"zoo.exporting MODEL --out {folder}")
        self.maps = ExportedModel(folder, FEATUREMAP_FILE, device, threads)
        self.head = ExportedModel(folder, HEAD_FILE, device, threads)
        self.metadata = self.maps.metadata
        self.input_size = self.maps.input_size
        self.views = 2 if self.metadata.get("flip_tta", "true") == "true" else 1
        n_ch = self.maps.meta_int("feature_channels")
        if isinstance(parts, dict):
            self.parts = validate_parts(parts, n_ch, "parts")
        elif parts is not None:
            self.parts = read_parts_file(Path(parts), n_ch)
        elif "channel_parts" in self.metadata:
            self.parts = validate_parts(json.loads(self.metadata["channel_parts"]), n_ch,
                                        f"{self.maps.path} (metadata channel_parts)")
        else:
            raise MissingPartTableError(f"{self.maps.path}: the export carries no channel -> "
                                        f"part table "
                                f"({PARTS_FILE}), so a match cannot be split by face part. "
                                f"Evaluate the model (python -m zoo.evaluate NAME writes "
                                f"{PARTS_FILE} beside its weights), then export it again, or "
                                f"pass a table (parts=FILE)")
        self.groups = part_groups(self.parts)

    def explain(self, img_a: ImageLike, img_b: ImageLike, threshold: Optional[float] = None,
                part_masks: Optional[np.ndarray] = None) -> ChannelEvidence:
        """The evidence of one pair (and what render() draws).

        part_masks: (2, 7, S, S) bool part masks of the two faces at the input size. Given, a
        channel's part is where its top-10% regions lie on THESE faces (pair_part_groups)
        instead of the evaluation table's average over held-out faces."""
        rgb = [load_image(img_a, 0), load_image(img_b, 1)]
        x = self.maps.preprocess(rgb)
        fmap, heat, mask = self.maps.run(x, [FEATURE_OUTPUT, HEATMAP_OUTPUT, MASK_OUTPUT])
        groups = self.groups
        if part_masks is not None:
            groups = pair_part_groups(mask, part_masks, self.parts.get("channel_fixed"))
        stack = [fmap]
        if self.views == 2:  # the embedding's flip TTA: the mirrored input, as EmbeddingModel
            stack.append(self.maps.run(np.ascontiguousarray(x[..., ::-1]), [FEATURE_OUTPUT])[0])
        terms, bias = self.head.run(np.concatenate(stack), [CHANNEL_TERMS_OUTPUT,
                                                            HEAD_BIAS_OUTPUT])
        terms = terms.astype(np.float64).reshape(self.views, 2, *terms.shape[1:]).sum(0)
        bias = bias.astype(np.float64).reshape(self.views, 2, -1).sum(0)
        ev = decompose(terms[0], terms[1], bias[0], bias[1], groups,
                       self.parts["part_names"])
        ev.threshold = threshold
        ev.model_name = self.metadata.get("model_name")
        ev.views = tuple(resize_square(im, self.input_size) for im in rgb)
        for p in ev.parts:
            for c in p.channels[:CHANNELS_SHOWN]:
                ev.heatmaps[c] = heat[:, c].copy()
                ev.masks[c] = mask[:, c].copy()
        return ev
