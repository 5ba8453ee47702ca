"""Face verification and explanation with exported models: onnxruntime + numpy + Pillow only.

    from export.runtime import FaceVerifier, FaceExplainer
    v = FaceVerifier("out/")                      # reads out/embedding.onnx
    r = v.verify("a.jpg", "b.jpg")                # r.similarity, r.same, r.threshold
    E = v.embed([img1, img2, ...])                # (N, D) float32, L2-normalised
    x = FaceExplainer("out/").explain("a.jpg")    # heatmaps, strongest channels + parts, overlay
    x.save("heat.png")
    ev = v.verify("a.jpg", "b.jpg", explain=True).evidence   # per-part evidence (pair_evidence)
    print(ev.table()); ev.render().save("why.png")

    python -m export.runtime verify A.jpg B.jpg --model out/ [--explain why.png]
    python -m export.runtime explain A.jpg --model out/ --out heat.png

Images: file paths, PIL images or numpy arrays (H x W grey, H x W x 1/3/4; uint8 0..255, uint16,
or float in [0, 1]); any mode, at least 16 x 16 pixels. Preprocessing is the training transform
(read from the model's metadata): convert to RGB (grey replicated, alpha dropped), bilinear
resize (Pillow) to the square input size without keeping the aspect ratio, x/255,
(x - mean) / std. Faces are expected to be cropped (``--crop`` in the CLI runs the export's
MTCNN face detector first: export.detector, no torch). Image loading and preprocessing live in
export.images, opening and validating the model folder (ModelDirError, onnx_metadata,
select_providers) in export.model_dir; both are re-exported here.

This module must not import torch: it is the deployable part (see docs/export.md).
"""
from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .channel_table import SHOWN_CHANNELS, shown_channels, validate_parts
from .detector import DETECTOR_DIR
from .drawing import jet
from .face_parts import FaceLandmarks, FaceLocator, channel_labels
from .images import ImageError, ImageLike, as_list, load_image, preprocess, resize_square
from .match_evidence import MatchExplainer, PairEvidence
from .model_dir import (
    PRECISIONS,
    ExportedModel,
    ModelDirError,
    model_file,
    onnx_metadata,
    select_providers,
)
from .model_files import (
    EMBEDDING_FILE,
    EMBEDDING_OUTPUT,
    FEATURE_OUTPUT,
    FEATUREMAP_FILE,
    HEATMAP_OUTPUT,
    MASK_OUTPUT,
)

__all__ = ["FaceVerifier", "FaceExplainer", "VerificationResult", "Explanation", "ChannelInfo",
           "ImageError", "ModelDirError", "load_image", "preprocess", "select_providers",
           "overlay_size", "overlay_format", "check_threshold", "onnx_metadata", "main"]

# Overlay layout (Fig. 6 style): the face and its strongest channels as a grid of square tiles,
# each with a caption band below. Size: see overlay_size().
TILE = 160
CAPTION = 20
DEFAULT_TOP_K = SHOWN_CHANNELS
# Overlay file formats by extension (Explanation.save): the bytes match the name.
OVERLAY_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


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


# ----------------------------------------------------------------------------------------------
# verification
# ----------------------------------------------------------------------------------------------

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
    precision: "float" (embedding.onnx) or "int8" (embedding-int8.onnx from `python -m export
    --int8`, gated at export against the float model; ModelDirError when the folder has none).
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


# ----------------------------------------------------------------------------------------------
# explanation
# ----------------------------------------------------------------------------------------------

@dataclass
class ChannelInfo:
    channel: int
    peak: float                  # max of the channel's target map for this image
    part: Optional[str] = None   # where its top-10% region lies on THIS face (None: no part)
    iou: Optional[float] = None  # that region's IoU with the part on this face
    table_part: Optional[str] = None  # its usual part on held-out faces (evaluation table)
    evidence: Optional[float] = None  # held-out part share x input dependence (0: fixed cell)

    def label(self) -> str:
        s = f"ch {self.channel} {self.part or 'none'}"
        if self.table_part is not None and self.table_part != self.part:
            s += f" (usually {self.table_part})"
        return s


@dataclass
class Explanation:
    image: Image.Image            # the RGB image as the network saw it (input_size square)
    feature_maps: np.ndarray      # (C, n, n) target-layer maps, post-ReLU
    heatmaps: np.ndarray          # (C, S, S) upsampled maps, 0 outside each channel's top 10%
    masks: np.ndarray             # (C, S, S) bool top-10% masks (paper Eq. 8-9)
    channels: List[ChannelInfo]   # the most telling channels first (rank_channels)
    overlay: Image.Image          # Fig. 6-style grid, size overlay_size(len(channels))
    part_names: Optional[List[str]] = None
    landmarks: Optional[FaceLandmarks] = None  # the 68 points the part labels used
    part_masks: Optional[np.ndarray] = None    # (7, S, S) this face's part masks

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the overlay in the format of the extension: .png, .jpg/.jpeg (quality 95) or
        .webp (lossless); anything else, or an existing folder, is a ValueError."""
        path = Path(path)
        fmt = overlay_format(path)
        options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(fmt, {})
        self.overlay.save(path, format=fmt, **options)
        return path


def overlay_format(path: Union[str, os.PathLike]) -> str:
    """The Pillow format an overlay is written in at ``path`` (by its extension, see
    OVERLAY_FORMATS); ValueError for a folder or an unknown extension, FileNotFoundError when
    the folder it would go into does not exist."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give the overlay's file name, e.g. "
                         f"{path / 'heat.png'}")
    fmt = OVERLAY_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown overlay extension {path.suffix!r}; use "
                         f"{', '.join(OVERLAY_FORMATS)}")
    if path.parent and not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: output folder does not exist")
    return fmt


def overlay_size(top_k: int = DEFAULT_TOP_K, tile: int = TILE) -> tuple:
    """(width, height) of the overlay: 1 + top_k tiles on a ceil(sqrt(1 + top_k))-column grid,
    each tile x tile pixels plus a caption band. Default (8 channels): 480 x 540."""
    n = 1 + top_k
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    return cols * tile, rows * (tile + CAPTION)


def _render_overlay(image: Image.Image, heatmaps: np.ndarray, masks: np.ndarray,
                    channels: List[ChannelInfo], tile: int = TILE) -> Image.Image:
    w, h = overlay_size(len(channels), tile)
    cols = w // tile
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    face = np.asarray(image.resize((tile, tile), Image.BILINEAR), dtype=np.float32)
    grey = face.mean(axis=2, keepdims=True).repeat(3, axis=2)
    tiles = [(Image.fromarray(face.astype(np.uint8)),
              "input" if channels else "no channel fires")]
    for ch in channels:
        hm = Image.fromarray(heatmaps[ch.channel].astype(np.float32), mode="F")
        hm = np.asarray(hm.resize((tile, tile), Image.BILINEAR), dtype=np.float32)
        on = np.asarray(Image.fromarray(masks[ch.channel]).resize((tile, tile), Image.NEAREST))
        top = float(hm.max())
        colour = jet(hm / top if top > 0 else hm).astype(np.float32)
        # grey face, dimmed outside the top 10%, jet colour blended inside it
        out = np.where(on[..., None], 0.4 * grey + 0.6 * colour, 0.6 * grey)
        tiles.append((Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)), ch.label()))
    for i, (im, caption) in enumerate(tiles):
        x, y = (i % cols) * tile, (i // cols) * (tile + CAPTION)
        canvas.paste(im, (x, y))
        draw.text((x + 4, y + tile + 4), caption, fill=(0, 0, 0), font=font)
    return canvas


class FaceExplainer:
    """Per-channel top-10% heatmaps and their parts from ``model_dir/featuremap.onnx``.

    parts: a channel -> part table (dict or JSON path) overriding the one in the metadata.
    precision: "float" (featuremap.onnx) or "int8" (featuremap-int8.onnx, written by
    `python -m export --int8` only when its top-10% masks agree with the float ones).
    """

    def __init__(self, model_dir: Union[str, os.PathLike], device: str = "auto",
                 threads: Optional[int] = None,
                 parts: Optional[Union[Dict[str, Any], str, os.PathLike]] = None,
                 precision: str = "float"):
        self.model = ExportedModel(model_dir, model_file(FEATUREMAP_FILE, precision), device,
                                   threads)
        self.precision = precision
        self.metadata = self.model.metadata
        self.input_size = self.model.input_size
        self.providers = self.model.providers
        self.locator = FaceLocator(Path(model_dir) / DETECTOR_DIR, threads=threads)
        n_ch = int(self.metadata.get("feature_channels", 0)) or None
        if parts is None and "channel_parts" in self.metadata:
            self.parts = validate_parts(json.loads(self.metadata["channel_parts"]), n_ch,
                                        f"{self.model.path} (metadata channel_parts)")
        elif isinstance(parts, dict):
            self.parts = validate_parts(parts, n_ch, "parts")
        elif parts is not None:
            from .channel_table import read_parts_file
            self.parts = read_parts_file(Path(parts), n_ch)
        else:
            self.parts = None

    def explain(self, img: ImageLike, top_k: int = DEFAULT_TOP_K,
                out: Optional[Union[str, os.PathLike]] = None, landmarks=None) -> Explanation:
        """Heatmaps of every channel and the ``top_k`` most telling channels with their parts;
        ``out`` saves the overlay PNG there.

        Channels are ranked by evidence x relative activation (export.channel_table.rank_channels):
        a channel that lands on its part on most held-out faces and depends on the input, firing
        at its usual strength or more, comes first; a channel that fires at a fixed cell
        whatever the input comes last. Exports without an evidence table rank by raw peak.
        A channel whose map is all zero on this image is never shown (it has no place to
        point at): fewer than ``top_k`` channels come back when fewer fire, none on an image
        no channel responds to. Each shown channel's ``part`` is where its top-10% region
        lies on this face's part masks (landmarks: found by the runtime unless given, a (68, 2)
        array or a .pts file); ``table_part`` is its usual part on held-out faces."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if out is not None:
            overlay_format(out)  # a bad output name fails before the model runs
        rgb = load_image(img)
        x = self.model.preprocess([rgb])
        fmap, heat, mask = (a[0] for a in self.model.run(
            x, [FEATURE_OUTPUT, HEATMAP_OUTPUT, MASK_OUTPUT]))
        peaks = fmap.reshape(fmap.shape[0], -1).max(axis=1)
        order = shown_channels(fmap, self.parts, top_k)
        face = self.locator.locate(rgb, landmarks)
        part_masks = face.part_masks(self.input_size)
        names, ious = channel_labels(mask[order], part_masks) if len(order) else ([], [])
        channels = []
        for c, name, iou in zip(order, names, ious):
            info = ChannelInfo(channel=int(c), peak=float(peaks[c]), part=name,
                               iou=float(iou))
            if self.parts is not None:
                p = self.parts["channel_part"][c]
                if p >= 0:
                    info.table_part = self.parts["part_names"][p]
                if "channel_evidence" in self.parts:
                    info.evidence = self.parts["channel_evidence"][c]
            channels.append(info)
        shown = resize_square(rgb, self.input_size)
        result = Explanation(image=shown, feature_maps=fmap, heatmaps=heat, masks=mask,
                             channels=channels, landmarks=face, part_masks=part_masks,
                             overlay=_render_overlay(shown, heat, mask, channels),
                             part_names=list(self.parts["part_names"]) if self.parts else None)
        if out is not None:
            result.save(out)
        return result


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def _maybe_crop(path: str, crop: bool, model_dir: str):
    """What the CLI passes on: ``path``, or with --crop its largest face cropped by the export's
    detector/ (export.crop, no torch); a note on stderr when the photo holds several faces."""
    if not crop:
        return path
    from .crop import find_face  # opens the detector's three ONNX sessions: only for --crop
    found = find_face(path, detector=model_dir)
    if found.num_faces > 1:
        print(f"note: {path}: {found.num_faces} faces found, cropped the largest",
              file=sys.stderr)
    return found.image


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.runtime",
                                description="Verify or explain faces with an exported zoo model "
                                            "(onnxruntime only). See docs/export.md.")
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True, help="folder written by `python -m export`")
    common.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    common.add_argument("--precision", default="float", choices=PRECISIONS,
                        help="int8: the quantized model of `python -m export --int8` (default: "
                             "float)")
    common.add_argument("--crop", action="store_true",
                        help="detect the largest face with MTCNN (the export's detector/) "
                             "and crop it the way training faces were cropped")
    v = sub.add_parser("verify", parents=[common], help="same person or not")
    v.add_argument("image_a")
    v.add_argument("image_b")
    v.add_argument("--threshold", type=float, default=None,
                   help="cosine threshold (default: the one chosen at evaluation)")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.add_argument("--landmarks", nargs=2, metavar=("A.pts", "B.pts"), default=None,
                   help="68-point landmarks of the two faces (iBUG .pts, or 68 'x y' lines) "
                        "for the part masks of --explain (default: found by the runtime)")
    v.add_argument("--estimator", default="kernel", choices=("kernel", "pairwise", "exact"),
                   help="--explain's Shapley values: kernel (74 coalitions, default), pairwise "
                        "(18: fastest, least accurate) or exact (256); docs/export.md")
    v.add_argument("--explain", default=None, metavar="OUT",
                   help="also print the per-part evidence table and write its picture to OUT "
                        "(.png, .jpg, .jpeg or .webp): the two faces, heatmaps of each part's "
                        "strongest channels, a bar chart of the per-part evidence")
    e = sub.add_parser("explain", parents=[common], help="heatmaps of the strongest channels")
    e.add_argument("image")
    e.add_argument("--out", required=True,
                   help="overlay image to write (.png, .jpg, .jpeg or .webp)")
    e.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    e.add_argument("--json", action="store_true", help="print the channels as JSON")
    e.add_argument("--landmarks", default=None, metavar="FACE.pts",
                   help="68-point landmarks of the face for the per-face channel labels "
                        "(default: found by the runtime)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "verify":
            if args.explain is not None:
                fmt = overlay_format(args.explain)  # a bad output name fails before the model
            verifier = FaceVerifier(args.model, threshold=args.threshold, device=args.device,
                                    precision=args.precision,
                                    estimator=args.estimator)
            r = verifier.verify(_maybe_crop(args.image_a, args.crop, args.model),
                                _maybe_crop(args.image_b, args.crop, args.model),
                                explain=args.explain is not None, landmarks=args.landmarks)
            if r.evidence is not None:
                options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(fmt, {})
                r.evidence.render().save(args.explain, format=fmt, **options)
            if args.json:
                out = {"similarity": r.similarity, "threshold": r.threshold, "same": r.same}
                if r.evidence is not None:
                    out.update(evidence=r.evidence.to_dict(), picture=args.explain)
                print(json.dumps(out))
            else:
                print(r)
                if r.evidence is not None:
                    print(r.evidence.table())
                    print(f"wrote {args.explain}")
        else:
            explainer = FaceExplainer(args.model, device=args.device, precision=args.precision)
            x = explainer.explain(_maybe_crop(args.image, args.crop, args.model), top_k=args.top_k,
                                  out=args.out, landmarks=args.landmarks)
            if args.json:
                print(json.dumps({"overlay": args.out, "size": list(x.overlay.size),
                                  "channels": [c.__dict__ for c in x.channels]}))
            else:
                print(f"wrote {args.out} ({x.overlay.size[0]}x{x.overlay.size[1]})")
                if explainer.parts is None or "channel_evidence" not in explainer.parts:
                    print("  note: this export has no evidence table (evaluate the model, then "
                          "export again): channels are ranked by raw peak")
                if not x.channels:
                    print("  no channel fires on this image: nothing to show")
                print(f"  part labels: where each channel fires on this face (landmarks: "
                      f"{x.landmarks.source})")
                for c in x.channels:
                    print(f"  channel {c.channel:4d}  peak {c.peak:8.4f}  "
                          f"part {c.part or 'none'} (IoU {c.iou:.2f})"
                          + (f"  usually {c.table_part}" if c.table_part else "")
                          + (f"  evidence {c.evidence:.2f}" if c.evidence is not None else ""))
    except (ImageError, ModelDirError, OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
