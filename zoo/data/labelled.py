"""The labelled-image-list dataset shared by ORL and identity folders.

One convention for every file-backed face dataset: items are (image, label), the image is
``transform(PIL RGB image)`` or the PIL RGB image itself, labels are contiguous 0..K-1 in the
sorted order of the identities, and an image that cannot be decoded raises an error naming its
file when it is read (not when the dataset is listed, so listing a million files stays cheap).
"""
from pathlib import Path

import torch
from PIL import Image

from .images import load_rgb


class LabelledImages(torch.utils.data.Dataset):
    """A list of image files with integer labels: the base of ORLFaces and IdentityFolder.

    Attributes: ``paths`` (list[Path]), ``labels`` (list[int], contiguous 0..K-1),
    ``identities`` (the identity name/number of each label, in label order), ``num_classes``.
    """

    def __init__(self, paths, labels, identities, transform=None):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [Path(p) for p in paths]
        self.labels = [int(y) for y in labels]
        self.identities = list(identities)
        self.num_classes = len(self.identities)
        self.transform = transform
        bad = [y for y in self.labels if not 0 <= y < self.num_classes]
        if bad:
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1}; got {bad[0]}")

    def __len__(self):
        return len(self.paths)

    def load(self, idx) -> Image.Image:
        """The decoded PIL RGB image of item ``idx`` (no transform)."""
        return load_rgb(self.paths[idx])

    def __getitem__(self, idx):
        img = self.load(idx)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.labels[idx]

    def __repr__(self):
        return (f"{type(self).__name__}({len(self)} images, {self.num_classes} identities, "
                f"transform={self.transform!r})")
