"""Face verification sets: pairs in the LFW protocol shape, insightface ``.bin`` files, LFW pairs.txt.

LFW protocol shape: the pairs are split into ``num_folds`` folds (LFW: 10), every fold holds as
many same-identity pairs as different-identity pairs (LFW: 300 + 300), listed positives first.

``.bin`` (insightface's lfw.bin, cfp_ff.bin, agedb_30.bin, calfw.bin, ...) is a pickle of
``(list of encoded image bytes, list of is_same flags)``, images in pair order (2 per pair).
A pickle can run arbitrary code when loaded, so it is read with a restricted unpickler that
builds only plain containers, bytes, numbers, bools and uint8/bool numpy arrays and refuses
every other global (see docs/data.md, "The .bin safety rule").
"""
import io
import itertools
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ._images import ImageDecodeError

# ---------------------------------------------------------------------------------------------
# Pairs in the LFW protocol shape
# ---------------------------------------------------------------------------------------------


def _all_pairs_of(idx):
    return [(int(a), int(b)) for a, b in itertools.combinations(idx, 2)]


def verification_pairs(labels, num_folds=10, pairs_per_fold=None, seed=0):
    """Balanced verification pairs over a labelled set: int64 array (N, 4) of (i, j, is_same, fold).

    ``i < j`` index into ``labels``. Every fold holds ``pairs_per_fold // 2`` same-identity pairs
    followed by as many different-identity pairs (LFW: pairs_per_fold=600). With
    ``pairs_per_fold=None`` every same-identity pair is used (rounded down to a multiple of
    ``num_folds``) with an equal number of different pairs drawn without replacement. The draw
    is deterministic in ``seed``. Rows iterate as (i, j, is_same, fold).
    """
    labels = np.asarray(labels).reshape(-1)
    num_folds = int(num_folds)
    if num_folds < 1:
        raise ValueError(f"num_folds must be >= 1, got {num_folds}")
    rng = np.random.default_rng(seed)
    by_class = {}
    for i, y in enumerate(labels.tolist()):
        by_class.setdefault(y, []).append(i)
    positives = [p for idx in by_class.values() for p in _all_pairs_of(idx)]
    n = len(labels)
    num_neg_total = n * (n - 1) // 2 - len(positives)
    if pairs_per_fold is None:
        per_fold = min(len(positives), num_neg_total) // num_folds
    else:
        if int(pairs_per_fold) < 2 or int(pairs_per_fold) % 2:
            raise ValueError(f"pairs_per_fold must be even and >= 2, got {pairs_per_fold}")
        per_fold = int(pairs_per_fold) // 2
    need = per_fold * num_folds
    if per_fold == 0:
        raise ValueError(f"cannot build balanced pairs: {len(positives)} same-identity and "
                         f"{num_neg_total} different-identity pairs for {num_folds} folds")
    if need > len(positives):
        raise ValueError(f"{need} same-identity pairs requested but the labels allow only "
                         f"{len(positives)}")
    if need > num_neg_total:
        raise ValueError(f"{need} different-identity pairs requested but the labels allow only "
                         f"{num_neg_total}")
    pos = np.asarray(positives, dtype=np.int64)[rng.permutation(len(positives))[:need]]
    neg = _draw_negatives(labels, need, num_neg_total, rng)
    rows = []
    for f in range(num_folds):
        for a, b in pos[f * per_fold:(f + 1) * per_fold]:
            rows.append((a, b, 1, f))
        for a, b in neg[f * per_fold:(f + 1) * per_fold]:
            rows.append((a, b, 0, f))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def _draw_negatives(labels, need, num_neg_total, rng):
    n = len(labels)
    if n <= 2000:  # enumerate (<= 2M pairs) so a small set is drawn exactly without replacement
        i, j = np.triu_indices(n, k=1)
        keep = labels[i] != labels[j]
        i, j = i[keep], j[keep]
        pick = rng.permutation(len(i))[:need]
        return np.stack([i[pick], j[pick]], 1)
    # Large sets: rejection sampling; negatives are the vast majority of all pairs.
    seen, out = set(), []
    while len(out) < need:
        a, b = rng.integers(0, n, size=2)
        a, b = (int(a), int(b)) if a < b else (int(b), int(a))
        if a != b and labels[a] != labels[b] and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return np.asarray(out, dtype=np.int64)


class PairDataset(torch.utils.data.Dataset):
    """Pairs over a labelled image dataset: items are (image_i, image_j, is_same, fold)."""

    def __init__(self, dataset, pairs):
        self.dataset = dataset
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 4)
        if len(self.pairs) and (self.pairs[:, :2].max() >= len(dataset) or self.pairs.min() < 0):
            raise IndexError(f"pair indices out of range for a dataset of {len(dataset)} items")

    @property
    def issame(self) -> np.ndarray:
        return self.pairs[:, 2].astype(bool)

    @property
    def folds(self) -> np.ndarray:
        return self.pairs[:, 3].copy()

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, k):
        i, j, same, fold = (int(v) for v in self.pairs[k])
        return self.dataset[i][0], self.dataset[j][0], bool(same), fold


class ORLPairs(PairDataset):
    """Verification pairs on the held-out ORL identities (LFW protocol shape, 10 folds).

    With the defaults (10 held-out identities x 10 images): all 450 same-identity pairs and 450
    drawn different-identity pairs, 45 + 45 per fold. ``dataset`` is the ORLFaces("heldout"),
    or ORLFaces("val") with split="val" (validation identities, for choosing settings).
    """

    def __init__(self, transform=None, num_train=30, seed=0, num_folds=10, pairs_per_fold=None,
                 pair_seed=0, split="heldout", num_val=0):
        from .orl import ORLFaces
        ds = ORLFaces(split, transform=transform, num_train=num_train, seed=seed, num_val=num_val)
        super().__init__(ds, verification_pairs(ds.labels, num_folds, pairs_per_fold, pair_seed))


# ---------------------------------------------------------------------------------------------
# insightface .bin
# ---------------------------------------------------------------------------------------------

class UnsafePickleError(pickle.UnpicklingError):
    """A .bin pickle that asks for something other than plain data; nothing was executed."""


def _np_reconstruct(cls, shape, dtype):
    # numpy's ndarray pickle calls _reconstruct(ndarray, (0,), b'b'); only allow plain ndarray.
    if cls is not np.ndarray:
        raise UnsafePickleError(f"numpy _reconstruct of {cls!r} refused")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _np_dtype(name, align=False, copy=True):
    dt = np.dtype(name)
    if dt.kind not in "biuf" or dt.hasobject:
        raise UnsafePickleError(f"numpy dtype {dt} refused (only bool/int/uint/float)")
    return dt


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise UnsafePickleError(f"numpy scalar of dtype {dtype!r} refused")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _np_dtype,
    ("_codecs", "encode"): None,  # filled below: py2 pickles of bytes go through codecs.encode
    ("builtins", "bytearray"): bytearray,
    ("__builtin__", "bytearray"): bytearray,
}


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    # Protocol-2 pickles of bytes made by Python 3 use _codecs.encode(str, 'latin1').
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode({type(obj).__name__}, {encoding!r}) refused")
    return obj.encode("latin1", errors)


_ALLOWED_GLOBALS[("_codecs", "encode")] = _codecs_encode


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain data; any other global (os.system, eval, __reduce__ tricks) is refused."""

    def __init__(self, f, where):
        super().__init__(f, encoding="bytes")  # py2 .bin files hold str -> bytes
        self._where = where

    def find_class(self, module, name):
        fn = _ALLOWED_GLOBALS.get((module, name))
        if fn is None:
            raise UnsafePickleError(
                f"{self._where}: refused to load global {module}.{name}; a .bin may hold only "
                "image bytes and same/different flags (the file is not a verification set, or it "
                "was crafted to run code when unpickled)")
        return fn

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._where}: persistent ids are not allowed in a .bin")


def read_bin_raw(path):
    """(list of encoded image bytes, bool array issame) of an insightface .bin, safely unpickled."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            obj = _RestrictedUnpickler(f, str(path)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
            raise ValueError(f"{path}: not a readable .bin pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise ValueError(f"{path}: a .bin holds (images, issame); got {type(obj).__name__}")
    bins, issame = obj
    images = []
    for k, b in enumerate(bins):
        if isinstance(b, np.ndarray) and b.dtype == np.uint8:
            b = b.tobytes()
        if not isinstance(b, (bytes, bytearray)):
            raise ValueError(f"{path}: image record {k} is {type(b).__name__}, expected bytes")
        images.append(bytes(b))
    issame = np.asarray([bool(s) for s in issame], dtype=bool)
    if len(images) != 2 * len(issame):
        raise ValueError(f"{path}: {len(images)} images for {len(issame)} pairs "
                         f"(a .bin holds 2 images per pair)")
    return images, issame


def decode_image_bytes(data, where="image bytes") -> Image.Image:
    """Decode encoded image bytes (JPEG/PNG/PGM...) to PIL RGB; errors name ``where``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"{where}: cannot decode image ({type(e).__name__}: {e})") from e


def read_bin(path, input_size=None):
    """Read an insightface .bin verification set: (images, issame bool array of N pairs).

    ``images`` holds 2N items in pair order (pair k = images 2k, 2k+1): PIL RGB images when
    ``input_size`` is None, else a float tensor (2N, 3, S, S) through
    ``face_transform(input_size)``. Use :func:`read_bin_raw` for the encoded bytes.
    """
    path = Path(path)
    raw, issame = read_bin_raw(path)
    imgs = [decode_image_bytes(b, f"{path}: image record {k}") for k, b in enumerate(raw)]
    if input_size is None:
        return imgs, issame
    from .transforms import face_transform
    tf = face_transform(input_size)
    return torch.stack([tf(im) for im in imgs]), issame


def write_bin(path, image_bytes_list, issame):
    """Write an insightface-compatible .bin: pickle of (list of bytes, list of bool).

    ``image_bytes_list`` holds encoded images (any format PIL/OpenCV decode) in pair order, two
    per entry of ``issame``.
    """
    path = Path(path)
    images = []
    for k, b in enumerate(image_bytes_list):
        if not isinstance(b, (bytes, bytearray)):
            raise TypeError(f"image {k} is {type(b).__name__}; write_bin takes encoded bytes")
        images.append(bytes(b))
    flags = [bool(s) for s in issame]
    if len(images) != 2 * len(flags):
        raise ValueError(f"{len(images)} images for {len(flags)} pairs: need exactly 2 per pair")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump((images, flags), f, protocol=4)
    tmp.replace(path)
    return path


def make_bin_from_pairs(dataset_paths, pairs, out_path):
    """Write a .bin of ``pairs`` (rows i, j, is_same, ...) over a list of image file paths.

    The files' bytes are stored verbatim (no re-encoding) so they read back byte for byte.
    """
    pairs = np.asarray(pairs).reshape(len(pairs), -1)
    images = []
    for row in pairs:
        for idx in (int(row[0]), int(row[1])):
            images.append(Path(dataset_paths[idx]).read_bytes())
    return write_bin(out_path, images, pairs[:, 2].astype(bool))


def make_bin_from_dataset(dataset, out_path, num_folds=10, pairs_per_fold=None, seed=0):
    """Write a .bin of balanced pairs (:func:`verification_pairs`) over a file-backed labelled
    dataset (``.paths`` and ``.labels``: ORLFaces, IdentityFolder); returns the number of pairs."""
    pairs = verification_pairs(dataset.labels, num_folds, pairs_per_fold, seed)
    make_bin_from_pairs(dataset.paths, pairs, out_path)
    return len(pairs)


# ---------------------------------------------------------------------------------------------
# LFW pairs.txt
# ---------------------------------------------------------------------------------------------

def read_lfw_pairs(path):
    """Parse LFW's pairs.txt / pairsDevTest.txt: list of (name1, n1, name2, n2, is_same, fold).

    Header "F P" (folds, same pairs per fold; each fold holds P same then P different lines)
    or "P" (one fold). Lines "name n1 n2" are same-identity pairs, "name1 n1 name2 n2" different.
    """
    path = Path(path)
    lines = [ln.split() for ln in path.read_text().splitlines()]
    lines = [(k + 1, t) for k, t in enumerate(lines) if t]
    if not lines:
        raise ValueError(f"{path}: empty pairs file")
    lineno, head = lines[0]
    try:
        nums = [int(v) for v in head]
    except ValueError:
        raise ValueError(f"{path}:{lineno}: header must be 'folds pairs' or 'pairs', got {head}")
    folds, per = (1, nums[0]) if len(nums) == 1 else (nums[0], nums[1])
    body = lines[1:]
    if len(body) != 2 * folds * per:
        raise ValueError(f"{path}: header promises {folds} folds x {per} same + {per} different "
                         f"pairs = {2 * folds * per} lines, found {len(body)}")
    out = []
    for k, (lineno, t) in enumerate(body):
        fold, within = divmod(k, 2 * per)
        want_same = within < per
        try:
            if len(t) == 3:
                rec = (t[0], int(t[1]), t[0], int(t[2]), True, fold)
            elif len(t) == 4:
                rec = (t[0], int(t[1]), t[2], int(t[3]), False, fold)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'name n1 n2' or 'name1 n1 name2 n2', "
                             f"got {' '.join(t)!r}") from None
        if rec[4] != want_same:
            raise ValueError(f"{path}:{lineno}: a {'same' if want_same else 'different'} pair "
                             f"was expected at this position of fold {fold}")
        out.append(rec)
    return out


def lfw_pair_paths(pairs, root, ext="jpg"):
    """Image paths of LFW pairs: ``root/name/name_%04d.<ext>`` (the LFW file naming)."""
    root = Path(root)
    return [(root / a / f"{a}_{i:04d}.{ext}", root / b / f"{b}_{j:04d}.{ext}", same, fold)
            for a, i, b, j, same, fold in pairs]


def make_bin_from_lfw_pairs(pairs_path, root, out_path, ext="jpg"):
    """Write a .bin of the pairs of an LFW pairs.txt over the images under ``root``
    (``root/name/name_%04d.<ext>``), stored verbatim; returns the number of pairs. A missing image
    raises FileNotFoundError naming it and the pairs file, before anything is written."""
    rows = lfw_pair_paths(read_lfw_pairs(pairs_path), root, ext)
    images = []
    for a, b, _, _ in rows:
        for path in (a, b):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: image named in {pairs_path} not found")
            images.append(path.read_bytes())
    write_bin(out_path, images, [r[2] for r in rows])
    return len(rows)
