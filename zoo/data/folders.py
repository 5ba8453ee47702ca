"""Identity folders: ``root/<identity>/<image>``, the layout every face dataset can be put in."""
import unicodedata
from pathlib import Path

from export.images import is_image_file

from .labelled import LabelledImages


def scan_identity_folder(root):
    """Return (paths, labels, identity_names) for ``root/<identity>/<image>``, sorted.

    Identities are the sub-folders of ``root`` in sorted order (label k = k-th name); images are
    the files with an image extension in each (sorted by name; hidden files skipped). Files
    directly under ``root`` are ignored: they have no identity.

    Refused with ValueError naming the folders (see docs/data.md): a sub-folder that is a link to
    ``root`` or to a folder above it (``X -> .``, a loop, not an identity), two sub-folders that
    are one folder (links), and two names that differ only in Unicode normalisation (NFC "é" and
    NFD "e" + accent look the same but are different folder names: one person, two labels).
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: identity folder root does not exist or is not a folder")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    _check_identity_names(root, names)
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


def _check_identity_names(root, names):
    real_root = root.resolve()
    seen_real, seen_nfc = {}, {}
    for name in names:
        real = (root / name).resolve()
        if real == real_root or real in real_root.parents:
            raise ValueError(f"{root / name}: identity folder is a link to {real}, the root or a "
                             "folder above it (a loop, not an identity): remove the link")
        if real in seen_real:
            raise ValueError(f"{root / name} and {root / seen_real[real]} are the same folder "
                             f"({real}): one identity cannot have two labels")
        nfc = unicodedata.normalize("NFC", name)
        if nfc in seen_nfc:
            raise ValueError(f"{root / seen_nfc[nfc]!s} and {root / name!s} are one name in two "
                             f"Unicode spellings ({ascii(seen_nfc[nfc])} vs {ascii(name)}, NFC "
                             "vs NFD): merge them into one folder")
        seen_real[real], seen_nfc[nfc] = name, name


class IdentityFolder(LabelledImages):
    """Faces in ``root/<identity>/<image>``; items are (image, label).

    ``identities[k]`` is the folder name of label k. An undecodable image raises an error naming
    its file when it is read.
    """

    def __init__(self, root, transform=None):
        self.root = Path(root)
        paths, labels, identities = scan_identity_folder(self.root)
        super().__init__(paths, labels, identities, transform)
