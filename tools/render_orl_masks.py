"""Render ORL faces with their 7 part masks overlaid (docs/figures/orl_part_masks.png).

    python tools/render_orl_masks.py [--out docs/figures/orl_part_masks.png] [--size 224]

The visual check of the committed landmarks and of the mask geometry in export.part_masks. A
maintenance script of the source tree (tools/), not part of the installed package.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's zoo package


def render(out, size=224, indices=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from export.part_masks import PART_COLORS, PART_NAMES, overlay_part_masks
    from zoo.data.orl import ORL_HEIGHT, ORL_WIDTH, ORLFaces
    from zoo.parts import scale_landmarks

    ds = ORLFaces("all")
    if indices is None:  # a spread of identities and poses, plus every fixed-box fallback
        fallback = [i for i in range(len(ds)) if ds.landmark_method(i) == "fixed-box"]
        indices = [0, 13, 47, 95, 128, 166, 201, 259, 314, 372, 399] + fallback
        indices = list(dict.fromkeys(indices))[:16]
    cols = 4
    rows = -(-len(indices) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2.8 + 0.6))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), indices):
        img = ds.load(i).resize((size, size))
        masks = ds.part_masks(i, size)
        ax.imshow(overlay_part_masks(img, masks))
        pts = scale_landmarks(ds.landmarks(i), (ORL_HEIGHT, ORL_WIDTH), (size, size))
        ax.plot(pts[:, 0], pts[:, 1], ".", ms=2, color="yellow")
        ax.set_title(f"{ds.key(i)} ({ds.landmark_method(i)})", fontsize=7)
    handles = [Patch(color=np.asarray(c) / 255, label=n) for n, c in zip(PART_NAMES, PART_COLORS)]
    fig.legend(handles=handles, loc="lower center", ncol=7, fontsize=8, frameon=False)
    fig.suptitle("ORL faces (stretched to the square model input) with their 7 part masks; "
                 "dots: dlib 68 landmarks", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python tools/render_orl_masks.py", description=__doc__)
    ap.add_argument("--out", default="docs/figures/orl_part_masks.png")
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    print(render(args.out, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
