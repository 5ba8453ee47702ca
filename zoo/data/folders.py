"""Identity folders: ``root/<identity>/<image>``, the layout every face dataset can be put in."""
from pathlib import Path

from ._images import LabelledImages, is_image_file


def scan_identity_folder(root):
    """Return (paths, labels, identity_names) for ``root/<identity>/<image>``, sorted.

    Identities are the sub-folders of ``root`` in sorted order (label k = k-th name); images are
    the files with an image extension in each (sorted by name; hidden files skipped). Files
    directly under ``root`` are ignored: they have no identity.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: identity folder root does not exist or is not a folder")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels, identities = [], [], []
    for name in names:
        files = sorted(f for f in (root / name).iterdir() if f.is_file() and is_image_file(f.name))
        if not files:
            continue  # an empty identity would be a class with no examples
        label = len(identities)
        identities.append(name)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise ValueError(f"{root}: no images found in the layout root/<identity>/<image>")
    return paths, labels, identities


class IdentityFolder(LabelledImages):
    """Faces in ``root/<identity>/<image>``; items are (image, label).

    ``identities[k]`` is the folder name of label k. An undecodable image raises an error naming
    its file when it is read.
    """

    def __init__(self, root, transform=None):
        self.root = Path(root)
        paths, labels, identities = scan_identity_folder(self.root)
        super().__init__(paths, labels, identities, transform)
