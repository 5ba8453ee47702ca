"""Decoding image files (and records) to PIL RGB on the data side, with errors that name them.

Decoding is export.images.decode_image, the one decoder of the project (torch-free, shared with
the runtime): EXIF orientation applied, 16-bit grey scaled, decompression bombs and images
below export.images.MIN_IMAGE_SIZE refused. Which files are images: export.images.is_image_file.
"""
from pathlib import Path

from PIL import Image

from export.images import ImageError, decode_image


class ImageDecodeError(ImageError):
    """An image file (or record) that cannot be decoded or is refused; the message names it.
    An export.images.ImageError, hence a ValueError."""


def decode_rgb(src, name=None) -> Image.Image:
    """Decode an image file or encoded bytes (``name``: how errors call them, e.g.
    "train.rec: record 7") to an upright 8-bit PIL RGB image; errors are ImageDecodeError
    ``"<name>: cannot decode image: <problem>"`` (FileNotFoundError for a missing file)."""
    try:
        return decode_image(src, name)
    except ImageError as e:
        where = e.name or name or str(src)
        raise ImageDecodeError(f"{where}: cannot decode image: {e.problem}", where,
                               e.problem) from None


def load_rgb(path) -> Image.Image:
    """Decode one image file to a PIL RGB image; errors name the file and the problem."""
    return decode_rgb(Path(path))
