"""Explaining one face with an exported model: the target layer's per-channel top-10%
heatmaps from ``featuremap.onnx``, the most telling channels with the part each covers on this
face, and their overlay picture (onnxruntime + numpy + Pillow only).

    from export.explainer import FaceExplainer
    x = FaceExplainer("out/").explain("a.jpg")    # heatmaps, strongest channels + parts, overlay
    x.save("heat.png")

Channels are ranked by export.channel_table.rank_channels; each shown channel is labelled with
the part its region covers on this face (export.face_parts).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .channel_table import SHOWN_CHANNELS, read_parts_file, shown_channels, validate_parts
from .detector import DETECTOR_DIR
from .drawing import jet
from .face_input import FaceInput, FacePreparer
from .face_parts import FaceLandmarks, FaceLocator, channel_labels, read_landmarks
from .images import ImageLike, resize_square
from .model_dir import ExportedModel, ModelDirError, model_file, onnx_metadata
from .model_files import (
    EMBEDDING_FILE,
    FEATURE_OUTPUT,
    FEATUREMAP_FILE,
    HEATMAP_OUTPUT,
    MASK_OUTPUT,
)

__all__ = ["FaceExplainer", "Explanation", "ChannelInfo", "NoChannelViewError", "overlay_size",
           "overlay_format", "save_picture", "DEFAULT_TOP_K", "OVERLAY_FORMATS"]

# Overlay layout (Fig. 6 style): the face and its strongest channels as a grid of square tiles,
# each with a caption band below. Size: see overlay_size().
TILE = 160
CAPTION = 20
DEFAULT_TOP_K = SHOWN_CHANNELS
# Overlay file formats by extension (Explanation.save): the bytes match the name.
OVERLAY_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


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
    input: Optional[FaceInput] = None          # what the model was given (export.face_input)

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the overlay in the format of the extension: .png, .jpg/.jpeg (quality 95) or
        .webp (lossless); anything else, or an existing folder, is a ValueError."""
        return save_picture(self.overlay, path)


def save_picture(picture: Image.Image, path: Union[str, os.PathLike]) -> Path:
    """Write ``picture`` (an overlay, or a match's evidence picture) in the format of the
    extension of ``path`` (overlay_format): PNG, JPEG at quality 95 or lossless WebP."""
    path = Path(path)
    fmt = overlay_format(path)
    options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(fmt, {})
    picture.save(path, format=fmt, **options)
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


class NoChannelViewError(ModelDirError):
    """The export has no channel view by design (a reference model such as dlib's ResNet was
    not trained with ECLoss: no featuremap.onnx); verify --explain gives its part evidence."""


def _no_channel_view(folder: Path, fname: str) -> None:
    """NoChannelViewError when ``folder`` is an export written without a channel view."""
    emb = folder / EMBEDDING_FILE
    if (folder / fname).is_file() or not emb.is_file():
        return
    try:
        meta = onnx_metadata(emb)
    except (OSError, ValueError):
        return
    if meta.get("channel_view") == "none":
        raise NoChannelViewError(
            f"{folder}: the {meta.get('model_name', 'exported')} model has no channel view "
            f"(no {FEATUREMAP_FILE}: {meta.get('channel_view_note', 'not an ECLoss model')}); "
            "`verify A B --explain why.png` gives its part (intervention) evidence")


class FaceExplainer:
    """Per-channel top-10% heatmaps and their parts from ``model_dir/featuremap.onnx``.

    parts: a channel -> part table (dict or JSON path) overriding the one in the metadata.
    precision: "float" (featuremap.onnx) or "int8" (featuremap-int8.onnx, written by
    `python -m zoo.exporting --int8` only when its top-10% masks agree with the float ones).
    """

    def __init__(self, model_dir: Union[str, os.PathLike], device: str = "auto",
                 threads: Optional[int] = None,
                 parts: Optional[Union[Dict[str, Any], str, os.PathLike]] = None,
                 precision: str = "float"):
        _no_channel_view(Path(model_dir), model_file(FEATUREMAP_FILE, precision))
        self.model = ExportedModel(model_dir, model_file(FEATUREMAP_FILE, precision), device,
                                   threads)
        self.precision = precision
        self.metadata = self.model.metadata
        self.input_size = self.model.input_size
        self.providers = self.model.providers
        self.locator = FaceLocator(Path(model_dir) / DETECTOR_DIR, threads=threads)
        self.faces = FacePreparer(model_dir, self.metadata, threads)
        n_ch = int(self.metadata.get("feature_channels", 0)) or None
        if parts is None and "channel_parts" in self.metadata:
            self.parts = validate_parts(json.loads(self.metadata["channel_parts"]), n_ch,
                                        f"{self.model.path} (metadata channel_parts)")
        elif isinstance(parts, dict):
            self.parts = validate_parts(parts, n_ch, "parts")
        elif parts is not None:
            self.parts = read_parts_file(Path(parts), n_ch)
        else:
            self.parts = None

    def explain(self, img: ImageLike, top_k: int = DEFAULT_TOP_K,
                out: Optional[Union[str, os.PathLike]] = None, landmarks=None,
                crop: str = "auto") -> Explanation:
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
        face_in = self.faces.prepare(img, crop)
        rgb = face_in.image
        x = self.model.preprocess([rgb])
        fmap, heat, mask = (a[0] for a in self.model.run(
            x, [FEATURE_OUTPUT, HEATMAP_OUTPUT, MASK_OUTPUT]))
        peaks = fmap.reshape(fmap.shape[0], -1).max(axis=1)
        order = shown_channels(fmap, self.parts, top_k)
        size = (rgb.width, rgb.height)
        if landmarks is not None:
            face = FaceLandmarks(face_in.map_points(read_landmarks(landmarks)), "given", size)
        elif face_in.landmarks is not None:
            face = FaceLandmarks(face_in.landmarks, "detected", size, face_in.faces_found or 0)
        else:
            face = self.locator.locate(rgb)
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
                             input=face_in,
                             overlay=_render_overlay(shown, heat, mask, channels),
                             part_names=list(self.parts["part_names"]) if self.parts else None)
        if out is not None:
            result.save(out)
        return result
