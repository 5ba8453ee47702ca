"""Side-by-side `explain` pictures of several exported models on the same faces (docs/results.md).

    python tools/explain_figure.py --models out/softmax out/previous out/default \
        --labels softmax "previous default" "new default" \
        --faces face1.png face2.pgm --out docs/figures/explain_compare.png

Each row is one face, each column one model: the runtime's own overlay (export.runtime
FaceExplainer.explain, the channels it shows, ranked as it ranks them), with the model's label
above. Runs on the torch-free runtime only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.explainer import FaceExplainer  # noqa: E402

TITLE = 22
GAP = 12


def compose(models, labels, faces, top_k: int = 8) -> Image.Image:
    explainers = [FaceExplainer(m) for m in models]
    rows = [[e.explain(f, top_k=top_k).overlay for e in explainers] for f in faces]
    w, h = rows[0][0].size
    canvas = Image.new("RGB", (len(models) * (w + GAP) - GAP, TITLE + len(faces) * (h + GAP)),
                       "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for j, label in enumerate(labels):
        draw.text((j * (w + GAP) + 4, 4), label, fill=(0, 0, 0), font=font)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            canvas.paste(im, (j * (w + GAP), TITLE + i * (h + GAP)))
    return canvas


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="exported model folders")
    p.add_argument("--labels", nargs="+", help="column titles (default: folder names)")
    p.add_argument("--faces", nargs="+", required=True)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    labels = args.labels or [Path(m).name for m in args.models]
    if len(labels) != len(args.models):
        p.error("give one label per model")
    compose(args.models, labels, args.faces, args.top_k).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
