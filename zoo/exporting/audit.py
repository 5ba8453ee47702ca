"""Audit an export's explanations on your own faces: do the shown channels depend on the face?

    python -m zoo.exporting.audit --model out/vgg19-ecloss faces/    # any folder of face crops
    python -m zoo.exporting.audit --model out/vgg19-ecloss a.jpg b.png --json

For every image, `explain` ranks the channels (export.channel_table.rank_channels) and shows
the first SHOWN_CHANNELS that fire on it (export.channel_table.shown_channels: a map that is
zero everywhere has no place to show). This reports, over the given faces (None where no
channel was shown):

* the share of shown channels whose peak lies on the outer ring of the target map, against the
  share a uniform spread would give (1 - (n-2)^2/n^2): explanations led by image-border cells
  explain nothing about the face;
* the share of shown channels that fire at one cell on every face and on content-free images
  (zoo.data.content_free) - computed here from these faces, like zoo.metrics.input_dependence
  does on held-out data;
* the share of shown channels the export's evidence table marks as fixed-cell channels.

It runs the exported ONNX models through the runtime (export.explainer) and measures with zoo's
own metric code (zoo.metrics.input_dependence, zoo.data.content_free), so it lives in the torch
layer. image_paths (the faces of files and folders) and target_maps (an explainer's target-layer
maps of images) are public: tools/ reuse them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from export.channel_table import SHOWN_CHANNELS, shown_channels
from export.explainer import FaceExplainer
from export.images import ImageError, decode_image
from export.model_dir import ModelDirError
from export.model_files import FEATURE_OUTPUT
from zoo.data.content_free import content_free_images
from zoo.metrics.explainability import outer_ring
from zoo.metrics.input_dependence import fixed_cell_channels

__all__ = ["audit", "image_paths", "target_maps", "main"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


def image_paths(paths: Sequence[str]) -> List[Path]:
    """The image files of ``paths``: a file as given, a folder's IMAGE_SUFFIXES files anywhere
    under it (sorted); FileNotFoundError for a path that does not exist or when none is found."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such image or folder")
    if not out:
        raise FileNotFoundError(f"no images found in {list(paths)}")
    return out


def target_maps(explainer: FaceExplainer, images) -> np.ndarray:
    """(N, C, n, n) target-layer maps of ``images`` from ``explainer``'s featuremap model,
    preprocessed as the runtime does."""
    x = explainer.model.preprocess(list(images))
    return explainer.model.run(x, [FEATURE_OUTPUT])[0]


def audit(model_dir, images: Sequence[str], top_k: int = SHOWN_CHANNELS) -> Dict[str, object]:
    """The numbers of the module docstring for the faces in ``images`` (files or folders)."""
    explainer = FaceExplainer(model_dir)
    paths, decoded, skipped = [], [], []
    for path in image_paths(images):  # undecodable files: skipped and listed (docs/data.md)
        try:
            decoded.append(decode_image(path))
            paths.append(path)
        except (ImageError, OSError) as exc:
            skipped.append({"image": str(path), "reason": str(exc)})
    if not paths:
        raise ValueError(f"none of the {len(skipped)} images could be decoded "
                         f"(first: {skipped[0]['reason']})")
    maps = np.concatenate([target_maps(explainer, decoded[i:i + 16])
                           for i in range(0, len(decoded), 16)])
    probes = target_maps(explainer, content_free_images(explainer.input_size).values())
    n_img, n_ch, n, _ = maps.shape
    ring = outer_ring(n).ravel()
    flat = maps.reshape(n_img, n_ch, -1)
    cells = flat.argmax(-1)
    fixed_here = fixed_cell_channels(maps, probes)["fixed"]      # measured on these faces
    table_fixed = np.asarray((explainer.parts or {}).get("channel_fixed", [0] * n_ch), bool)
    per_image, shown_ring, shown_fixed, shown_table_fixed = [], [], [], []
    for i, path in enumerate(paths):
        order = shown_channels(flat[i], explainer.parts, top_k)
        shown_ring += [bool(ring[cells[i, c]]) for c in order]
        shown_fixed += [bool(fixed_here[c]) for c in order]
        shown_table_fixed += [bool(table_fixed[c]) for c in order]
        per_image.append({"image": str(path), "channels": order,
                          "cells": [[int(cells[i, c]) // n, int(cells[i, c]) % n] for c in order]})
    return {"model": str(model_dir), "images": len(paths), "shown_per_image": top_k,
            "map_size": int(n),
            "ranked_by": "evidence" if explainer.parts and "channel_evidence" in explainer.parts
            else "raw peak",
            "shown_ring_share": float(np.mean(shown_ring)) if shown_ring else None,
            "shown_channels": len(shown_ring),
            "uniform_ring_share": float(ring.mean()),
            "shown_fixed_here_share": float(np.mean(shown_fixed)) if shown_fixed else None,
            "shown_fixed_in_table_share": (float(np.mean(shown_table_fixed)) if shown_table_fixed
                                           else None),
            "fixed_here_channel_share": float(fixed_here.mean()),
            "per_image": per_image, "num_skipped": len(skipped), "skipped": skipped}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.exporting.audit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="face images or folders of them (cropped faces)")
    p.add_argument("--model", required=True, help="folder written by `python -m zoo.exporting`")
    p.add_argument("--top-k", type=int, default=SHOWN_CHANNELS)
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    args = p.parse_args(argv)
    try:
        res = audit(args.model, args.images, args.top_k)
    except (ImageError, ModelDirError, OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if res["skipped"]:
        print(f"note: skipped {res['num_skipped']} undecodable images:", file=sys.stderr)
        for item in res["skipped"]:
            print(f"  {item['reason']}", file=sys.stderr)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0

    def share(v):
        return "-" if v is None else f"{v:.3f}"
    print(f"{res['images']} faces, up to {res['shown_per_image']} channels shown per face "
          f"(ranked by {res['ranked_by']}; {res['shown_channels']} shown in all: channels that "
          f"do not fire are not shown)")
    print(f"  shown channels peaking on the map's outer ring: {share(res['shown_ring_share'])} "
          f"(uniform spread: {res['uniform_ring_share']:.3f})")
    print(f"  shown channels at a fixed cell on these faces and on blank/noise images: "
          f"{share(res['shown_fixed_here_share'])} (all channels: "
          f"{res['fixed_here_channel_share']:.3f})")
    print(f"  shown channels the evidence table marks as fixed: "
          f"{share(res['shown_fixed_in_table_share'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
