"""Image inputs of the runtime: load any image-like input as RGB, and the training preprocessing.

Images: file paths, PIL images or numpy arrays (H x W grey, H x W x 1/3/4; uint8 0..255, or float
in [0, 1]); any mode and size. Preprocessing is the training transform (read from the model's
metadata): convert to RGB (grey replicated, alpha dropped), bilinear resize (Pillow) to the
square input size without keeping the aspect ratio, x/255, (x - mean) / std.

numpy + Pillow only: shared by export.runtime (deployable, no torch) and export.crop (--crop).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageLike", "ImageError", "load_image", "resize_square", "preprocess", "as_list"]

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input is not a usable image (unreadable file, wrong array shape or dtype)."""


def _describe(src: Any, index: Optional[int]) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    what = "PIL image" if isinstance(src, Image.Image) else type(src).__name__
    return f"{what} #{index}" if index is not None else what


def _array_to_pil(a: np.ndarray, name: str) -> Image.Image:
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        raise ImageError(f"{name}: array of shape {a.shape} looks channels-first; pass H x W x C")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ImageError(f"{name}: expected an H x W or H x W x 1/3/4 array, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(f"{name}: empty image array of shape {a.shape}")
    if a.dtype == np.uint8:
        pass
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ImageError(f"{name}: float arrays must hold values in [0, 1] (got range "
                             f"{np.nanmin(a):.3g}..{np.nanmax(a):.3g}); pass uint8 for 0..255")
        a = np.rint(a * 255.0).astype(np.uint8)
    else:
        raise ImageError(f"{name}: array dtype {a.dtype} not supported; use uint8 (0..255) or "
                         "float in [0, 1]")
    mode = "L" if a.ndim == 2 else ("RGB" if a.shape[-1] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(a), mode=mode)


def load_image(src: ImageLike, index: Optional[int] = None) -> Image.Image:
    """An RGB PIL image from a path, PIL image or array; ImageError names the bad input."""
    name = _describe(src, index)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image file not found")
        try:
            with Image.open(path) as im:
                im.load()  # decode now: a truncated file fails here, not later
                img = im.copy()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{path}: not an image file Pillow can read ({exc})") from None
    elif isinstance(src, Image.Image):
        img = src
    elif isinstance(src, np.ndarray):
        img = _array_to_pil(src, name)
    else:
        raise ImageError(f"{name}: expected a file path, a PIL image or a numpy array")
    if img.width < 1 or img.height < 1:
        raise ImageError(f"{name}: empty image ({img.width}x{img.height})")
    # The training transform's conversion: grey replicated, alpha dropped, palette expanded.
    return img if img.mode == "RGB" else img.convert("RGB")


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Bilinear resize to size x size, aspect ratio not kept."""
    # torchvision's Resize on a PIL image is exactly this call (training used it).
    return img.resize((size, size), Image.BILINEAR)


def preprocess(images: Sequence[ImageLike], input_size: int,
               mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
               channel_order: str = "RGB", first_index: int = 0) -> np.ndarray:
    """(N, 3, S, S) float32 network input, as documented in the model metadata.
    ``first_index`` numbers in-memory images in error messages (item #first_index + i)."""
    mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    arrs = []
    for i, src in enumerate(images):
        a = np.asarray(resize_square(load_image(src, first_index + i), input_size),
                       dtype=np.float32)
        arrs.append(a.transpose(2, 0, 1))
    x = np.stack(arrs) / np.float32(255.0)
    if channel_order == "BGR":
        x = x[:, ::-1]
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def as_list(images) -> list:
    """One image or several (a list, or an (N, H, W[, C]) array stack) as a list of images."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        # a stack (N, H, W[, C]) of uint8/float images, or one image
        if images.ndim == 4 or (images.ndim == 3 and images.shape[-1] not in (1, 3, 4)):
            return list(images)
        return [images]
    return list(images)
