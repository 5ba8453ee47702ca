"""Image inputs of the runtime: load any image-like input as RGB, and the training preprocessing.

Images: file paths, PIL images or numpy arrays (H x W grey, H x W x 1/3/4; uint8 0..255, uint16
0..65535, or float in [0, 1]); any mode, at least MIN_IMAGE_SIZE pixels on each side.
Preprocessing is the training transform (read from the model's metadata): convert to RGB (grey
replicated, alpha dropped), bilinear resize (Pillow) to the square input size without keeping the
aspect ratio, x/255, (x - mean) / std.

The one image decoding path of the project (`decode_image`, `to_rgb`): zoo's data sets, zoo.prep,
RecordIO and .bin readers decode through it too, so every decoder refuses the same inputs
(decompression bombs, images below the minimum size, float images outside [0, 1]) and converts
the same way (EXIF orientation applied, 16-bit grey scaled to 8 bits, not clipped).

numpy + Pillow only: shared by the runtime (deployable, no torch), export.crop (--crop) and zoo.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageLike", "ImageError", "MIN_IMAGE_SIZE", "IMAGE_FORMATS", "IMAGE_EXTENSIONS",
           "decode_image", "to_rgb", "load_image", "resize_square", "normalise", "preprocess",
           "is_image_file",
           "as_list"]

# Smallest accepted side in pixels. MTCNN's smallest face is 12 px (its P-Net window) and the
# smallest model input is 64 px: below 16 px an image carries no usable face, and a 1 x 1 image
# would otherwise be upsampled and scored like a face.
MIN_IMAGE_SIZE = 16
# The formats decode_image opens (Pillow format names): those of the image extensions zoo lists
# and of .rec / .bin records. Pillow's other plugins (EPS runs Ghostscript, many rarely used
# parsers) are never tried on untrusted bytes.
IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "PPM", "TIFF", "WEBP", "GIF")
# File names taken for images when a folder is listed (the extensions of IMAGE_FORMATS).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff",
                    ".webp", ".gif")

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input is not a usable image (unreadable file, wrong array shape or dtype).

    The message is ``"<name>: <problem>"``; ``name`` and ``problem`` are also attributes."""

    def __init__(self, message: str, name: Optional[str] = None, problem: Optional[str] = None):
        super().__init__(message)
        self.name = name
        self.problem = problem if problem is not None else message


def _refuse(name: str, problem: str) -> ImageError:
    return ImageError(f"{name}: {problem}", name, problem)


def _describe(src: Any, index: Optional[int]) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    what = "PIL image" if isinstance(src, Image.Image) else type(src).__name__
    return f"{what} #{index}" if index is not None else what


def _array_to_pil(a: np.ndarray, name: str) -> Image.Image:
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        raise _refuse(name, f"array of shape {a.shape} looks channels-first; pass H x W x C")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise _refuse(name, f"expected an H x W or H x W x 1/3/4 array, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise _refuse(name, f"empty image array of shape {a.shape}")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:  # 16-bit: the scaling of a 16-bit PNG (mode I;16), see to_rgb
        a = _scale_16bit(a)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise _refuse(name, "float arrays must hold values in [0, 1] (got range "
                                f"{np.nanmin(a):.3g}..{np.nanmax(a):.3g}); pass uint8 for 0..255")
        a = np.rint(a * 255.0).astype(np.uint8)
    else:
        raise _refuse(name, f"array dtype {a.dtype} not supported; use uint8 (0..255), "
                            "uint16 (0..65535) or float in [0, 1]")
    mode = "L" if a.ndim == 2 else ("RGB" if a.shape[-1] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(a), mode=mode)


def _scale_16bit(a: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 (v / 257 rounded: 65535 -> 255), the full range kept, not clipped."""
    return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)  # = round(v / 257), no ties


def to_rgb(img: Image.Image, name: str) -> Image.Image:
    """An 8-bit RGB copy of a decoded PIL image, or ImageError naming ``name``.

    Grey is replicated, alpha dropped, palettes expanded (Pillow's convert). Integer grey
    (I;16*, I) is read as 16-bit, 0..65535 -> 0..255 (Pillow's convert would clip at 255: a
    16-bit face would be nearly all white); values outside 0..65535 are refused. Float grey (F)
    must lie in [0, 1] like a float numpy array (x 255, rounded); other ranges are refused, since
    no scale can be guessed. Sides below MIN_IMAGE_SIZE are refused. An RGB image is returned
    as it is (not copied)."""
    if img.width < MIN_IMAGE_SIZE or img.height < MIN_IMAGE_SIZE:
        raise _refuse(name, f"image is {img.width}x{img.height} pixels, smaller than the minimum "
                            f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}")
    mode = img.mode
    try:
        if mode == "RGB":
            return img
        if mode == "I" or mode.startswith("I;16"):
            a = np.asarray(img)
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi > 65535:
                raise _refuse(name, f"integer image (mode {mode}) with values {lo}..{hi} outside "
                                    "the 16-bit range 0..65535")
            return Image.fromarray(_scale_16bit(a), mode="L").convert("RGB")
        if mode == "F":
            return _array_to_pil(np.asarray(img, dtype=np.float32), name).convert("RGB")
        return img.convert("RGB")
    except ImageError:
        raise
    except Exception as exc:  # Pillow: ValueError for modes it cannot convert, OSError on decode
        raise _refuse(name, f"cannot convert image mode {mode} to RGB "
                            f"({type(exc).__name__}: {exc})") from None


def _upright(img: Image.Image, name: str) -> Image.Image:
    """The image with its EXIF orientation applied (the way photo viewers show it)."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception as exc:  # a malformed EXIF block: orientation unknown, so refuse
        raise _refuse(name, f"cannot apply the EXIF orientation ({type(exc).__name__}: "
                            f"{exc})") from None


def _open_formats() -> tuple:
    Image.init()  # registers every plugin once; Image.open(formats=...) does not
    return tuple(f for f in IMAGE_FORMATS if f in Image.OPEN)


def decode_image(src: Union[str, os.PathLike, bytes, bytearray, memoryview],
                 name: Optional[str] = None) -> Image.Image:
    """Decode an image file (path) or encoded bytes to an upright 8-bit RGB PIL image.

    The project's one decoder: every failure is an ImageError ``"<name>: <problem>"`` (``name``
    defaults to the path; give one for bytes, e.g. "train.rec: record 7"), whatever Pillow raised:
    not an image, truncated or corrupt data, a decompression bomb (more pixels than Pillow's
    Image.MAX_IMAGE_PIXELS, 89.5 M by default: refused from the header, before any pixel is
    decoded, at Pillow's warning level as well as its error level), a malformed EXIF block, a
    mode without an RGB conversion, or an image below MIN_IMAGE_SIZE. A missing file raises
    FileNotFoundError; other file-system errors (permissions) propagate as OSError. See to_rgb
    for the conversion."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        name = name or "image bytes"
        fp = io.BytesIO(bytes(src))
    else:
        path = Path(src)
        name = name or str(path)
        if not path.exists():
            raise FileNotFoundError(f"{name}: image file not found")
        if not path.is_file():
            raise _refuse(name, "not a regular file")
        fp = open(path, "rb")
    with fp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(fp, formats=_open_formats()) as im:
                    limit = Image.MAX_IMAGE_PIXELS
                    if limit and im.width * im.height > limit:  # in case the filter was bypassed
                        raise Image.DecompressionBombError(f"{im.width * im.height} pixels")
                    im.load()  # decode now: a truncated file fails here, not later
                    return to_rgb(_upright(im, name), name)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _refuse(name, f"refused as a possible decompression bomb ({exc}; the limit is "
                                f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS})") from None
        except UnidentifiedImageError:
            raise _refuse(name, "not an image file Pillow can read (supported formats: "
                                f"{', '.join(IMAGE_FORMATS)})") from None
        except Exception as exc:  # untrusted bytes: anything Pillow raises means undecodable
            raise _refuse(name, f"corrupt or truncated image data ({type(exc).__name__}: "
                                f"{exc})") from None


def load_image(src: ImageLike, index: Optional[int] = None) -> Image.Image:
    """An RGB PIL image from a path, PIL image or array; ImageError names the bad input.

    Paths go through decode_image; PIL images through the same EXIF orientation and to_rgb
    (so a PIL image of mode F in [0, 1] equals the float array of the same values)."""
    name = _describe(src, index)
    if isinstance(src, (str, os.PathLike)):
        return decode_image(src)
    if isinstance(src, Image.Image):
        try:
            src.load()
        except Exception as exc:  # a lazily opened PIL image whose data is corrupt
            raise _refuse(name, f"corrupt or truncated image data ({type(exc).__name__}: "
                                f"{exc})") from None
        return to_rgb(_upright(src, name), name)
    if isinstance(src, np.ndarray):
        return to_rgb(_array_to_pil(src, name), name)
    raise ImageError(f"{name}: expected a file path, a PIL image or a numpy array")


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Bilinear resize to size x size, aspect ratio not kept."""
    # torchvision's Resize on a PIL image is exactly this call (training used it).
    return img.resize((size, size), Image.BILINEAR)


def normalise(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float],
              channel_order: str = "RGB") -> np.ndarray:
    """(N, H, W, 3) RGB pixels in [0, 255] -> (N, 3, H, W) float32 network input: x / 255, the
    model's channel order, (x - mean) / std. Per pixel, so a region may be filled after it."""
    mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    x = np.asarray(pixels, dtype=np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
    if channel_order == "BGR":
        x = x[:, ::-1]
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def preprocess(images: Sequence[ImageLike], input_size: int,
               mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
               channel_order: str = "RGB", first_index: int = 0) -> np.ndarray:
    """(N, 3, S, S) float32 network input, as documented in the model metadata.
    ``first_index`` numbers in-memory images in error messages (item #first_index + i)."""
    pixels = np.stack([np.asarray(resize_square(load_image(src, first_index + i), input_size),
                                  dtype=np.float32) for i, src in enumerate(images)])
    return normalise(pixels, mean, std, channel_order)


def is_image_file(name: Union[str, os.PathLike]) -> bool:
    """Whether a file name is an image to list: an IMAGE_EXTENSIONS suffix, not hidden."""
    name = os.fspath(name)
    return not os.path.basename(name).startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


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
