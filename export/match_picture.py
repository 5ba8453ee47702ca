"""The picture of a match explanation (PairEvidence.render): torch-free, Pillow only.

Layout: the decision; the two faces as the network saw them, each with its part masks tinted
(so the landmarks the runtime used can be checked at a glance); then one row per part, largest
difference first: the part highlighted on both faces, a bar of its share of 1 - similarity
(one axis for every row), the similarity with the part hidden, and a thin grey bar with what
the channel view gives the same part; last the ``other`` row and the sum.

It reads the PairEvidence it is given (export.match_evidence) by attribute and does not import
that module, which imports this one.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .drawing import NEGATIVE, NEUTRAL, POSITIVE, draw_decision, font
from .part_masks import PART_COLORS, PART_NAMES, overlay_part_masks

MARGIN, GAP = 12, 8
FACE = 176
TILE = 80
BAR = 220
WIDTH = MARGIN * 2 + 2 * TILE + GAP * 3 + 90 + BAR + 110
ROW = TILE + GAP


def _part_tile(face: Image.Image, mask: np.ndarray, colour, tile: int) -> Image.Image:
    """The face in grey, dimmed outside ``mask``, tinted with the part's colour inside it."""
    rgb = np.asarray(face.convert("RGB"), dtype=np.float32)
    grey = rgb.mean(axis=2, keepdims=True).repeat(3, axis=2)
    tint = 0.55 * grey + 0.45 * np.asarray(colour, np.float32)
    out = np.where(mask[..., None], tint, 0.45 * grey + 40)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).resize((tile, tile),
                                                                          Image.BILINEAR)


def render_pair_evidence(ev) -> Image.Image:
    """The picture of ``ev``, an export.match_evidence.PairEvidence that carries its images."""
    rows = len(ev.parts)
    top = 64 + FACE + 24
    height = top + rows * ROW + 3 * 22 + MARGIN
    canvas = Image.new("RGB", (WIDTH, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    mid, small = font(14), font(12)

    draw_decision(draw, MARGIN, MARGIN, ev.same, ev.similarity, ev.threshold, ev.model_name)

    y = 64
    for i, (im, name) in enumerate(zip(ev.views, "AB")):
        x = MARGIN + i * (FACE + GAP)
        tinted = Image.fromarray(overlay_part_masks(im, ev.part_masks[i], alpha=0.3))
        canvas.paste(tinted.resize((FACE, FACE), Image.BILINEAR), (x, y))
        draw.text((x + 4, y + FACE + 4), f"face {name} (landmarks: {ev.landmarks[i]})",
                  fill=(0, 0, 0), font=small)
    legend = ["rows: face parts, the part", "that made the most", "difference first", "",
              "bar: the part's share of", "1 - similarity (Shapley value", "of hiding it on "
              "both faces)"]
    if ev.channel_view is not None:  # a reference model (dlib-resnet) has no channel view
        legend += ["", "grey bar: the share the", "ECLoss channels on that part",
                   "give it (channel view)"]
    lx = MARGIN + 2 * FACE + 2 * GAP + 8
    for i, text in enumerate(legend):
        draw.text((lx, y + i * 14), text, fill=(70, 70, 70), font=small)

    values = [p.difference for p in ev.parts] + [ev.other]
    values += [p.channel_difference for p in ev.parts if p.channel_difference is not None]
    lo, hi = min(0.0, *values), max(0.0, *values)
    span = (hi - lo) or 1.0
    bx = MARGIN + 2 * TILE + 2 * GAP + 90
    zero = bx + (0.0 - lo) / span * BAR

    def bar(y0: int, value: float, fill, thick: int = 12) -> None:
        end = bx + (value - lo) / span * BAR
        draw.rectangle([min(zero, end), y0, max(zero, end), y0 + thick], fill=fill)
        draw.text((max(zero, end) + 6, y0 - 2), f"{value:+.4f}", fill=(0, 0, 0), font=small)

    for r, p in enumerate(ev.parts):
        y = top + r * ROW
        k = PART_NAMES.index(p.part)
        for i in range(2):
            tile = _part_tile(ev.views[i], ev.part_masks[i, k], PART_COLORS[k], TILE)
            canvas.paste(tile, (MARGIN + i * (TILE + GAP), y))
        tx = MARGIN + 2 * TILE + 2 * GAP
        draw.text((tx, y + 4), p.part, fill=(0, 0, 0), font=mid)
        draw.text((tx, y + 24), f"hidden: {p.hidden_similarity:.3f}", fill=(90, 90, 90),
                  font=small)
        draw.line([zero, y + 2, zero, y + 50], fill=(0, 0, 0), width=1)
        bar(y + 8, p.difference, NEGATIVE if p.difference >= 0 else POSITIVE)
        if p.channel_difference is not None:
            bar(y + 32, p.channel_difference, NEUTRAL, thick=6)
    y = top + rows * ROW
    draw.text((MARGIN, y + 2), "other (pixels of no part)", fill=(0, 0, 0), font=small)
    draw.line([zero, y - 2, zero, y + 18], fill=(0, 0, 0), width=1)
    bar(y + 3, ev.other, NEUTRAL)
    draw.text((MARGIN, y + 26), f"sum of the bars = 1 - similarity = {1 - ev.similarity:.4f}"
              f"   ({ev.estimator} Shapley values)", fill=(0, 0, 0), font=mid)
    if ev.agree is not None:
        draw.text((MARGIN, y + 48), "channel view names the same part first: "
                  + ("yes" if ev.agree else "no"), fill=(70, 70, 70), font=small)
    return canvas
