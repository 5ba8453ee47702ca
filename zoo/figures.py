"""Figures of the paper, drawn with matplotlib (Agg): Fig. 5, Fig. 6, Fig. 7 and the per-channel
part histogram. Each function takes arrays and a PNG path, so evaluation and tests share them.
Also the training curves of a run (from its log.csv)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from export.part_masks import PART_COLORS, PART_NAMES, overlay_part_masks


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _show_image(ax, img):
    ax.imshow(img, cmap="gray" if np.ndim(img) == 2 else None)
    ax.set_xticks([])
    ax.set_yticks([])


def feature_maps_figure(path: Path, image: np.ndarray, maps_by_model: Dict[str, np.ndarray],
                        num_channels: int = 16) -> Path:
    """Paper Fig. 5: one face and its target-layer maps, one row block per model (e.g. with and
    without ECLoss). Shows each model's ``num_channels`` strongest channels (by max activation),
    each map scaled to its own range."""
    plt = _plt()
    cols = 8
    rows_per = int(np.ceil(num_channels / cols))
    n_models = len(maps_by_model)
    fig = plt.figure(figsize=(2 + cols * 1.3, 0.4 + n_models * rows_per * 1.4))
    grid = fig.add_gridspec(n_models * rows_per, cols + 2)
    ax = fig.add_subplot(grid[:, :2])
    _show_image(ax, image)
    ax.set_title("input")
    for m, (name, maps) in enumerate(maps_by_model.items()):
        order = np.argsort(-maps.reshape(len(maps), -1).max(1))[:num_channels]
        for k, c in enumerate(order):
            a = fig.add_subplot(grid[m * rows_per + k // cols, 2 + k % cols])
            a.imshow(maps[c], cmap="viridis", interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])
            a.set_title(f"ch {c}", fontsize=7, pad=1)
            if k % cols == 0:
                a.set_ylabel(name, fontsize=8)
    fig.suptitle("target-layer feature maps (strongest channels)", fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def heatmaps_figure(path: Path, images: Sequence[np.ndarray], heat: np.ndarray,
                    regions: np.ndarray, channels: Sequence[int],
                    labels: Sequence[str]) -> Path:
    """Paper Fig. 6: for chosen channels (rows) over several faces (columns), the upsampled
    activation with its top-10% region outlined. heat/regions: (I, K, H, W), K = len(channels),
    in the order of ``channels``."""
    plt = _plt()
    n_img, n_ch = len(images), len(channels)
    fig, axes = plt.subplots(n_ch, n_img, figsize=(1.6 * n_img + 1, 1.7 * n_ch + 0.5),
                             squeeze=False)
    for r, (c, label) in enumerate(zip(channels, labels)):  # r indexes heat, c is the label
        for i in range(n_img):
            ax = axes[r][i]
            _show_image(ax, images[i])
            h = heat[i, r]
            span = float(h.max() - h.min())
            ax.imshow((h - h.min()) / span if span > 0 else np.zeros_like(h), cmap="jet",
                      alpha=0.45, vmin=0, vmax=1)
            ax.contour(regions[i, r].astype(float), levels=[0.5], colors="white", linewidths=0.8)
            if i == 0:
                ax.set_ylabel(f"ch {c}\n{label}", fontsize=8)
    fig.suptitle("top-10% activation of selected channels (white outline), label = dominant part",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def part_masks_figure(path: Path, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]
                      ) -> Path:
    """Paper Fig. 7: faces with their 7 part masks overlaid."""
    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.0 * n, 2.6), squeeze=False)
    for ax, img, m in zip(axes[0], images, masks):
        _show_image(ax, overlay_part_masks(img, m))
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(c) / 255) for c in PART_COLORS]
    fig.legend(handles, PART_NAMES, loc="lower center", ncol=7, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def part_histogram_figure(path: Path, counts: np.ndarray, title: str = "",
                          max_channels: int = 64, num_images: Optional[int] = None,
                          order: Optional[Sequence[int]] = None) -> Path:
    """Per-channel part histogram A_{i,k}: stacked bars of the share of images on which each
    part is the channel's best part, plus a grey "none" bar (images on which the channel lands
    on no part) when ``num_images`` is given. Channels in ``order`` (e.g. by evidence), else
    sorted by their dominant part and its share."""
    plt = _plt()
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(1) if num_images is None else np.full(len(counts), float(num_images))
    share = np.divide(counts.max(1), total, out=np.zeros(len(total)), where=total > 0)
    order = (np.asarray(order[:max_channels], dtype=np.int64) if order is not None
             else np.lexsort((-share, counts.argmax(1)))[:max_channels])
    frac = np.divide(counts[order], total[order, None], out=np.zeros_like(counts[order]),
                     where=total[order, None] > 0)
    fig, ax = plt.subplots(figsize=(max(6, 0.14 * len(order) + 2), 3.2))
    bottom = np.zeros(len(order))
    for k, name in enumerate(PART_NAMES[:counts.shape[1]]):
        ax.bar(np.arange(len(order)), frac[:, k], bottom=bottom, width=0.9, label=name,
               color=np.array(PART_COLORS[k]) / 255)
        bottom += frac[:, k]
    if num_images is not None:
        ax.bar(np.arange(len(order)), 1 - bottom, bottom=bottom, width=0.9, label="none",
               color=(0.85, 0.85, 0.85))
    ax.set_xlabel("channel (most evidence first)" if order is not None and num_images is not None
                  else "channel (sorted by dominant part)")
    ax.set_ylabel("share of images")
    ax.set_xticks(np.arange(len(order)))
    ax.set_xticklabels([str(c) for c in order], fontsize=5, rotation=90)
    ax.set_ylim(0, 1)
    ax.set_title(title or "per-channel part histogram A_{i,k}", fontsize=9)
    ax.legend(fontsize=7, ncol=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def training_curves_figure(csv_path: Path, png_path: Path) -> Optional[Path]:
    """Loss parts, beta and accuracy against steps, from a run's log.csv (zoo.engine); None when
    the log has no rows."""
    import csv
    plt = _plt()
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, key, title in zip(axes, ["ce", "mi", "beta", "acc"],
                              ["cross-entropy", "mutual information (Eq. 5)", "beta", "train acc"]):
        ax.plot(steps, [float(r[key]) for r in rows], lw=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        if key == "beta":
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
