"""Background test (docs/results.md, Part 2): do a model's shown channels stay on the head when
the background behind it changes?

    python -m research.background_test runs/remedies/zoo/study-vgg19-... --backgrounds photos/ \
        --num-train 25 --num-val 5 --split val

Each face of the split is pasted (research.background: the head mask from its landmarks) onto
three random square crops of the photos in --backgrounds (converted to grey, like ORL), and the
channels `explain` would show (export.channel_table.shown_channels with channel_parts.json,
8 per face) are checked: the share whose peak is on the map's outer ring, and the share whose peak
cell lies off the head (head mask < 0.5 at that cell). The same on the plain faces for comparison.
We used the scikit-image sample photos that show no face (brick, chelsea, clock_motion, coffee,
coins, grass, gravel, hubble_deep_field, ihc, moon, motorcycle_left, page, retina, rocket, text):
the photos are not shipped and scikit-image is not a dependency; any folder of photos will do.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from export.channel_table import SHOWN_CHANNELS, shown_channels
from zoo import builder
from zoo.data.orl import ORLFaces
from zoo.data.transforms import face_transform
from zoo.metrics.explainability import outer_ring

from .background import composite_background, head_mask

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def shown_cells(model, table, images, size: int):
    """(row, col) of the argmax cell of every shown channel of every image, and the map size."""
    tf = face_transform(size)
    with torch.no_grad():
        f = torch.cat([model.forward_features(torch.stack([tf(x) for x in images[j:j + 32]]))
                       for j in range(0, len(images), 32)]).float().numpy()
    n = f.shape[-1]
    flat = f.reshape(*f.shape[:2], -1)
    out = []
    for i in range(len(images)):
        order = shown_channels(flat[i], table, SHOWN_CHANNELS)
        out.append([divmod(int(flat[i, c].argmax()), n) for c in order])
    return out, n


def ring_and_off_head(cells, masks, n: int):
    on_ring = outer_ring(n)
    ring = off = total = 0
    for img_cells, mask in zip(cells, masks):
        small = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize(
            (n, n), Image.BILINEAR)) / 255.0
        for r, q in img_cells:
            ring += bool(on_ring[r, q])
            off += small[r, q] < 0.5
            total += 1
    return round(ring / total, 3), round(off / total, 3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a registered model folder (with channel_parts.json)")
    p.add_argument("--backgrounds", required=True, help="a folder of photos without faces")
    p.add_argument("--split", default="val", choices=["val", "heldout"])
    p.add_argument("--num-train", type=int, default=25)
    p.add_argument("--num-val", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = builder.load(args.model)
    size = int(model.zoo_config["arch"]["input_size"])
    table = json.loads((Path(args.model) / "channel_parts.json").read_text())
    photos = [Image.open(q).convert("L").convert("RGB")
              for q in sorted(Path(args.backgrounds).iterdir()) if q.suffix.lower() in SUFFIXES]
    if len(photos) < 3:
        raise SystemExit(f"{args.backgrounds}: need at least 3 photos, found {len(photos)}")
    ds = ORLFaces(args.split, num_train=args.num_train, num_val=args.num_val)
    rng = np.random.default_rng(args.seed)
    plain, plain_masks, pasted, pasted_masks = [], [], [], []
    for i in range(len(ds)):
        img = ds.load(i)
        mask = head_mask(ds.landmarks(i), img.height, img.width)
        plain.append(img)
        plain_masks.append(mask)
        for k in rng.choice(len(photos), 3, replace=False):
            bg = photos[k]
            s = rng.uniform(0.3, 1.0) * min(bg.size)
            x0, y0 = rng.uniform(0, bg.size[0] - s), rng.uniform(0, bg.size[1] - s)
            crop = np.asarray(bg.crop((x0, y0, x0 + s, y0 + s)).resize((img.width, img.height)))
            pasted.append(composite_background(img, mask, crop))
            pasted_masks.append(mask)
    cells, n = shown_cells(model, table, plain, size)
    cells_bg, _ = shown_cells(model, table, pasted, size)
    print(json.dumps({"model": Path(args.model).name, "split": args.split,
                      "faces (ring, off-head)": ring_and_off_head(cells, plain_masks, n),
                      "faces on photos (ring, off-head)":
                      ring_and_off_head(cells_bg, pasted_masks, n)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
