"""Content-free images: inputs with no face in them (blank, noise).

Two uses, one definition of "content-free":

* ``content_free_images``: the fixed probe set of the input-dependence metric
  (zoo.metrics.input_dependence): grey, black, white, pixel noise, smooth noise, and two kinds
  the training batch never contains (a checkerboard and a diagonal ramp), so a model trained
  with the content-free term is also probed on inputs it was not taught to ignore; PIL images
  that go through the same transform as faces.
* ``step_content_free_batch``: which of them a rank adds to its batch at a training step: the
  global batch's images are a function of (seed, step) only and each rank takes its slice, so
  resumed and data-parallel runs see the same images (``content_free_count`` says how many).
* ``random_content_free_batch``: the training batch of the content-free remedy (our extension,
  zoo.ecloss.content_free_term): random constant levels, pixel noise and smooth noise, already
  normalised like face_transform's output ((x - 0.5) / 0.5, so values in [-1, 1]).

A training hook (zoo.training_hook) may replace some of a step's images (research/: the ICNN
paper's part-shuffled faces).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["CONTENT_FREE_KINDS", "TRAINING_KINDS", "CONTENT_FREE_SHARE", "content_free_images",
           "random_content_free_batch", "content_free_count", "step_content_free_batch",
           "step_generator"]

# Content-free images added to each training batch when the term is on: a quarter of the batch.
CONTENT_FREE_SHARE = 0.25

CONTENT_FREE_KINDS = ("grey", "black", "white", "noise", "smooth-noise", "checkerboard", "ramp")
# kinds random_content_free_batch draws from (the others are never seen in training)
TRAINING_KINDS = ("constant", "noise", "smooth-noise")


def content_free_images(size: int = 112, seed: int = 0) -> Dict[str, Image.Image]:
    """{kind: RGB PIL image of size x size}: the probe set, the same for every model and run."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    coarse = rng.integers(0, 256, size=(max(2, size // 16), max(2, size // 16), 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
    yy, xx = np.mgrid[0:size, 0:size]
    square = max(2, size // 8)
    checker = (((yy // square + xx // square) % 2) * 255).astype(np.uint8)
    ramp = ((yy + xx) * 255.0 / max(1, 2 * size - 2)).astype(np.uint8)
    return {
        "grey": Image.new("RGB", (size, size), (128, 128, 128)),
        "black": Image.new("RGB", (size, size), (0, 0, 0)),
        "white": Image.new("RGB", (size, size), (255, 255, 255)),
        "noise": Image.fromarray(noise),
        "smooth-noise": smooth,
        "checkerboard": Image.fromarray(checker).convert("RGB"),
        "ramp": Image.fromarray(ramp).convert("RGB"),
    }


def random_content_free_batch(k: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(k, 3, size, size) float32 normalised content-free images: cycling through a constant
    grey level, pixel noise and smooth noise (coarse noise upsampled), grey or colour."""
    out = torch.empty(k, 3, size, size)
    for i in range(k):
        kind = i % 3
        if kind == 0:
            level = torch.rand(1, generator=generator) * 2 - 1
            out[i] = level
        elif kind == 1:
            out[i] = torch.rand(3, size, size, generator=generator) * 2 - 1
        else:
            cells = int(torch.randint(2, 9, (1,), generator=generator))
            coarse = torch.rand(1, 3, cells, cells, generator=generator) * 2 - 1
            out[i] = F.interpolate(coarse, size=(size, size), mode="bilinear",
                                   align_corners=False)[0]
        if bool(torch.rand(1, generator=generator) < 0.5):   # half of them grey, like ORL
            out[i] = out[i].mean(0, keepdim=True).expand(3, size, size)
    return out


def content_free_count(local_batch: int, weight: float) -> int:
    """Content-free images per rank and step: CONTENT_FREE_SHARE of the rank's batch when the
    content-free term is on (``weight`` > 0), else none."""
    return int(round(CONTENT_FREE_SHARE * local_batch)) if weight > 0 else 0


def step_content_free_batch(seed: int, step: int, n: int, world: int, rank: int,
                            input_size: int) -> torch.Tensor:
    """Rank ``rank``'s ``n`` content-free images of training step ``step`` (of ``world`` ranks)."""
    g = torch.Generator().manual_seed(seed * 1_000_033 + step)
    free = random_content_free_batch(n * world, input_size, g)
    return free[rank * n:(rank + 1) * n]


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """A generator of rank ``rank`` at training step ``step``, a function of (seed, step, rank)
    alone: what a training hook draws a step's images with (zoo.training_hook)."""
    return torch.Generator().manual_seed((seed * 1_000_033 + step) * 64 + rank)
