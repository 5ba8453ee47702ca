"""Background randomisation (our extension, not the paper's method): during training, replace
everything outside the head of a face with a random background.

Why: ORL (the embedded data) photographs every person in front of the same dark, even
background, so the sharpest and most reliable features of its images are the edges between hair,
face and that background. ECLoss rewards any sharply peaked map, so a model trained on ORL learns
channels that fire on those edges; on a photo with another background the same channels fire on
the background (docs/results.md, Part 2). With a random background behind the head on a share of
the training images, firing on the background helps neither the identity loss nor the template
match, and the edge to a dark background is no longer always there.

The head is the union of the seven part masks of export.part_masks (hair, forehead, cheek, eyes,
nose, mouth, jaw) drawn from the image's 68 landmarks, feathered by a Gaussian so that the seam
is not a sharp edge of its own. So this needs landmarks for every training image: ORL ships them
(zoo/data/orl_landmarks.npz); other training data are refused with a clear error.

Backgrounds are drawn with torch's global RNG, like torchvision's random flips, so a training run
(which seeds it per epoch, zoo.engine) stays a function of its seed.

The same head mask also serves the off-head term (research.off_head): with ``head_size`` set,
RandomBackground returns each face's head mask at the input size with it, flipped together with
the image. Training takes both through research.hooks.ExperimentHook (``--background``,
``--off-head`` of ``python -m research.train``).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from scipy import ndimage

__all__ = ["BACKGROUND_KINDS", "FEATHER", "GROW", "head_mask", "random_background",
           "composite_background", "RandomBackground"]

BACKGROUND_KINDS = ("constant", "smooth-noise", "noise", "ramp")
FEATHER = 0.02   # Gaussian sigma of the mask edge, x the image diagonal (about 3 px on ORL)
GROW = 0.03      # the head mask grown by this x the image diagonal (about 4 px on ORL): the part
                 # masks' hair is a half-ellipse that leaves some real hair outside


def head_mask(landmarks: np.ndarray, height: int, width: int, feather: float = FEATHER,
              grow: float = GROW) -> np.ndarray:
    """(height, width) float32 in [0, 1]: 1 on the head (the union of export.part_masks' seven part
    masks for these 68 landmarks in pixel coordinates, grown by ``grow`` x the image diagonal),
    0 on the background, a Gaussian edge of sigma ``feather`` x the image diagonal."""
    from export.part_masks import part_masks_from_landmarks
    head = part_masks_from_landmarks(np.asarray(landmarks, dtype=np.float64), height,
                                     width).any(0)
    diag = float(np.hypot(height, width))
    if grow > 0:
        head = ndimage.distance_transform_edt(~head) <= grow * diag
    head = head.astype(np.float32)
    sigma = feather * diag
    return np.clip(ndimage.gaussian_filter(head, sigma) if sigma > 0 else head, 0.0, 1.0)


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def random_background(height: int, width: int, colour: bool = True) -> np.ndarray:
    """(height, width, 3) uint8: one of BACKGROUND_KINDS at a random level and contrast, grey or
    (when ``colour``) tinted; drawn with torch's global RNG."""
    kind = BACKGROUND_KINDS[int(torch.randint(len(BACKGROUND_KINDS), ()))]
    level, contrast = _uniform(0.0, 1.0), _uniform(0.1, 0.6)
    if kind == "constant":
        base = np.zeros((height, width), np.float32)
    elif kind == "noise":
        base = torch.randn(height, width).numpy() * 0.5
    elif kind == "smooth-noise":
        cells = int(torch.randint(2, 17, ()))              # 2..16 blobs across the image
        coarse = torch.randn(1, 1, cells, cells)
        base = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic",
                                               align_corners=False)[0, 0].numpy() * 0.5
    else:  # ramp in a random direction
        angle = _uniform(0.0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        base = (np.cos(angle) * xx / max(width - 1, 1) + np.sin(angle) * yy / max(height - 1, 1))
        base = base - base.mean()
    grey = level + contrast * base
    if colour and float(torch.rand(())) < 0.5:
        tint = torch.rand(3).numpy() * 0.4 - 0.2        # per-channel offset
        rgb = grey[..., None] + tint[None, None]
    else:
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def composite_background(img: Image.Image, mask: np.ndarray,
                         background: np.ndarray) -> Image.Image:
    """The RGB image ``img`` where ``mask`` (H, W in [0, 1]) is 1, ``background`` (H, W, 3 uint8)
    where it is 0, blended in between."""
    face = np.asarray(img.convert("RGB"), dtype=np.float32)
    if face.shape[:2] != mask.shape or background.shape != face.shape:
        raise ValueError(f"image {face.shape}, mask {mask.shape} and background "
                         f"{background.shape} differ in size")
    m = mask[..., None]
    out = face * m + background.astype(np.float32) * (1.0 - m)
    return Image.fromarray((out + 0.5).clip(0, 255).astype(np.uint8))


class RandomBackground(torch.utils.data.Dataset):
    """A training dataset (LabelledImages with a ``landmarks(idx)`` method, e.g. ORLFaces) whose
    images get a random background with probability ``probability`` before its transform.

    The wrapped dataset's transform runs after the swap; its attributes (labels, num_classes,
    identities, ...) are passed through.

    head_size: items are (image, label, head) with head the (head_size, head_size) float32 head
    mask, stretched to a square like the image; then the transform must not flip (``flip``: a
    random horizontal flip of image and mask together, here)."""

    def __init__(self, dataset, probability: float,
                 transform: Optional[Callable] = None, head_size: Optional[int] = None,
                 flip: bool = False):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"background probability must be in [0, 1], got {probability}")
        if not callable(getattr(dataset, "landmarks", None)):
            raise ValueError(f"background randomisation needs 68 landmarks for every training "
                             f"image to find the head; {type(dataset).__name__} has none (only "
                             f"--data orl ships them)")
        if flip and head_size is None:
            raise ValueError("flip here is for a head mask that flips with the image: give "
                             "head_size (else flip in the transform)")
        self.dataset = dataset
        self.probability = float(probability)
        self.transform = dataset.transform if transform is None else transform
        self.head_size = None if head_size is None else int(head_size)
        self.flip = bool(flip)
        self._heads = {}

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        # labels, num_classes, identities, paths ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _head(self, idx, img: Image.Image):
        """(feathered head mask, is the face in colour) of item ``idx``, from its decoded image
        (cached: both are fixed per image)."""
        if idx not in self._heads:
            a = np.asarray(img.convert("RGB"))
            # a grey face (ORL: grey replicated to RGB) gets a grey background, or colour
            # itself would tell background from face
            colour = not (np.array_equal(a[..., 0], a[..., 1])
                          and np.array_equal(a[..., 1], a[..., 2]))
            self._heads[idx] = (head_mask(self.dataset.landmarks(idx), img.height, img.width),
                                colour)
        return self._heads[idx]

    def mask(self, idx) -> np.ndarray:
        """The feathered head mask of item ``idx`` at its image size (cached)."""
        return self._head(idx, self.dataset.load(idx))[0]

    def __getitem__(self, idx):
        img = self.dataset.load(idx)
        if self.probability > 0 and float(torch.rand(())) < self.probability:
            mask, colour = self._head(idx, img)
            img = composite_background(img, mask,
                                       random_background(img.height, img.width, colour))
        if self.head_size is None:
            if self.transform is not None:
                img = self.transform(img)
            return img, self.dataset.labels[idx]
        head = torch.from_numpy(self._head(idx, img)[0])[None, None]
        head = F.interpolate(head, size=(self.head_size, self.head_size), mode="bilinear",
                             align_corners=False)[0, 0]
        if self.flip and float(torch.rand(())) < 0.5:
            img, head = ImageOps.mirror(img), head.flip(-1)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.dataset.labels[idx], head.clamp(0.0, 1.0)

    def __repr__(self):
        return f"RandomBackground({self.dataset!r}, probability={self.probability})"
