"""The picture of the channel view of a match (ChannelEvidence.render): Pillow only.

Layout: the decision; the two faces side by side with a legend; then per part (largest
contribution first) the top-10% regions of its CHANNELS_SHOWN strongest channels on both faces
in explain's tile style, and a bar of its contribution on one axis with the residual's, so the
bars sum to the similarity.

It reads the ChannelEvidence it is given (export.channel_evidence) by attribute and does not
import that module, which imports this one.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .drawing import NEGATIVE, NEUTRAL, POSITIVE, draw_decision, font, jet, no_minus_zero as _z

__all__ = ["render_channel_evidence", "CHANNELS_SHOWN"]

CHANNELS_SHOWN = 3          # strongest channels per part whose heatmaps the picture combines
MARGIN, GAP = 12, 8
FACE = 176                   # the two faces at the top
TILE = 88                    # a part's heatmap tile, per face
BAR = 240                    # the bar chart's width
WIDTH = MARGIN * 2 + 2 * TILE + GAP * 2 + BAR + 150
ROW = TILE + GAP


def _heat_tile(face: Image.Image, heats: List[np.ndarray], masks: List[np.ndarray],
               tops: List[float], tile: int) -> Image.Image:
    """The face in grey, dimmed outside the union of the channels' top-10% regions, jet colour
    inside (each channel scaled by its largest value over both faces): explain's tile style."""
    rgb = np.asarray(face.resize((tile, tile), Image.BILINEAR), dtype=np.float32)
    grey = rgb.mean(axis=2, keepdims=True).repeat(3, axis=2)
    value = np.zeros((tile, tile), np.float32)
    on = np.zeros((tile, tile), bool)
    for h, m, top in zip(heats, masks, tops):
        hm = np.asarray(Image.fromarray(h.astype(np.float32), mode="F").resize(
            (tile, tile), Image.BILINEAR), dtype=np.float32)
        mk = np.asarray(Image.fromarray(m).resize((tile, tile), Image.NEAREST))
        if top > 0:
            value = np.maximum(value, np.where(mk, hm / top, 0))
        on |= mk
    colour = jet(value).astype(np.float32)
    out = np.where(on[..., None], 0.4 * grey + 0.6 * colour, 0.6 * grey)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def render_channel_evidence(ev, views: Tuple[Image.Image, Image.Image]) -> Image.Image:
    """The picture of ``ev``, an export.channel_evidence.ChannelEvidence, over the two faces
    ``views`` (as the network saw them, or the caller's)."""
    rows = len(ev.parts)
    top = 64 + FACE + 24
    height = top + rows * ROW + 2 * 28 + MARGIN
    canvas = Image.new("RGB", (WIDTH, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    mid, small = font(14), font(12)

    draw_decision(draw, MARGIN, MARGIN, ev.same, ev.similarity, ev.threshold, ev.model_name)

    # the two faces, and a legend beside them
    y = 64
    for i, (im, name) in enumerate(zip(views, "AB")):
        x = MARGIN + i * (FACE + GAP)
        canvas.paste(im.convert("RGB").resize((FACE, FACE), Image.BILINEAR), (x, y))
        draw.text((x + 4, y + FACE + 4), f"face {name}", fill=(0, 0, 0), font=small)
    legend = ["rows: face parts, largest", "contribution first", "",
              "tiles: top-10% regions of the", f"part's {CHANNELS_SHOWN} strongest channels",
              "on face A | face B", "",
              "bar: the part's share of the", "similarity; bars + residual",
              "sum to the similarity", "",
              "sim: the faces on that part alone", "diff: its share of 1 - similarity"]
    lx = MARGIN + 2 * FACE + 2 * GAP + 8
    for i, text in enumerate(legend):
        draw.text((lx, y + i * 13), text, fill=(70, 70, 70), font=small)

    # the bar axis: one scale for every part and the residual
    values = [p.contribution for p in ev.parts] + [ev.residual]
    lo, hi = min(0.0, *values), max(0.0, *values)
    span = (hi - lo) or 1.0
    bx = MARGIN + 2 * TILE + 2 * GAP
    zero = bx + (0.0 - lo) / span * BAR

    def bar(y0: int, value: float, colour) -> None:
        end = bx + (value - lo) / span * BAR
        draw.rectangle([min(zero, end), y0, max(zero, end), y0 + 12], fill=colour)
        tx = max(zero, end) + 6
        draw.text((tx, y0 - 1), f"{_z(value):+.4f}", fill=(0, 0, 0), font=small)

    for r, p in enumerate(ev.parts):
        y = top + r * ROW
        shown = [c for c in p.channels[:CHANNELS_SHOWN] if c in ev.heatmaps]
        scale = [float(max(ev.heatmaps[c][0].max(), ev.heatmaps[c][1].max())) for c in shown]
        for i in range(2):
            tile = _heat_tile(views[i], [ev.heatmaps[c][i] for c in shown],
                              [ev.masks[c][i] for c in shown], scale, TILE)
            canvas.paste(tile, (MARGIN + i * (TILE + GAP), y))
        draw.text((bx, y + 2), p.part, fill=(0, 0, 0), font=mid)
        chans = ("ch " + ", ".join(str(c) for c in shown) if shown
                 else "no channels in this part")
        draw.text((bx + 90, y + 4), chans, fill=(90, 90, 90), font=small)
        draw.line([zero, y + 24, zero, y + 48], fill=(0, 0, 0), width=1)
        bar(y + 30, p.contribution, POSITIVE if p.contribution >= 0 else NEGATIVE)
        if p.channels:
            draw.text((bx, y + 54), f"sim {_z(p.part_similarity, 3):+.3f}   diff "
                                    f"{_z(p.difference):+.4f}", fill=(70, 70, 70), font=small)
    y = top + rows * ROW
    draw.text((MARGIN, y + 2), "residual (bias, no part)", fill=(0, 0, 0), font=small)
    draw.line([zero, y - 2, zero, y + 20], fill=(0, 0, 0), width=1)
    bar(y + 3, ev.residual, NEUTRAL)
    draw.text((MARGIN, y + 30), f"sum of the bars = similarity {ev.similarity:.4f}",
              fill=(0, 0, 0), font=mid)
    return canvas
