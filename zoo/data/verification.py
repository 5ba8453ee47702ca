"""Face verification sets: pairs in the LFW protocol shape, insightface ``.bin`` files, LFW
pairs.txt.

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
import math
import pickle
import pickletools
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .._io import atomic_write_files, sweep_stale_tmp
from ._images import ImageDecodeError, decode_rgb, load_rgb  # noqa: F401 (re-exported)

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


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in a .bin pickle. Only ``_reconstruct`` accepts it; calling
    it (a REDUCE or NEWOBJ of ``numpy.ndarray(shape)``) fails, so a pickle cannot allocate an
    array of any shape it likes."""
    __slots__ = ()

    def __repr__(self):
        return "numpy.ndarray"


_NDARRAY = _NdarrayClass()


class _PickledDtype:
    """A dtype being unpickled: ``numpy.dtype(name)``, then BUILD with its state. The state is
    checked here and never given to numpy: ``dtype.__setstate__`` lets a pickle give a uint8 dtype
    object fields, and an array of it would take pointers from the file."""
    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata]);
        # a plain numeric dtype has no subarray, names or fields, size -1 and flags 0.
        dt = self.dtype
        if (not isinstance(state, tuple) or len(state) not in (8, 9)
                or any(v is not None for v in state[2:5]) or state[5] not in (-1, dt.itemsize)
                or state[6] not in (-1, dt.alignment) or state[7] != dt.flags
                or (len(state) == 9 and state[8] is not None)):
            raise UnsafePickleError(f"numpy dtype {self.dtype} with state {_short(state)} "
                                    "refused (only plain bool/int/uint/float dtypes)")
        order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]
        if order not in ("<", ">", "|", "="):
            raise UnsafePickleError(f"numpy dtype byte order {_short(order)} refused")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


class _PickledArray:
    """An ndarray being unpickled: ``_reconstruct(ndarray, (0,), b'b')``, then BUILD with (version,
    shape, dtype, is_fortran, raw bytes). The array is made only when the bytes in the file are
    exactly what the shape and dtype need, so its size is bounded by the file's."""
    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise UnsafePickleError(f"numpy array state {_short(state)} refused")
        shape, dt, fortran, raw = state
        if not isinstance(dt, _PickledDtype):
            raise UnsafePickleError(f"numpy array of dtype {_short(dt)} refused")
        if (not isinstance(shape, tuple) or len(shape) > 32
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                           for n in shape)):
            raise UnsafePickleError(f"numpy array shape {_short(shape)} refused")
        if not isinstance(raw, (bytes, bytearray)):
            raise UnsafePickleError(f"numpy array data of type {type(raw).__name__} refused")
        need = math.prod(shape) * dt.dtype.itemsize
        if need != len(raw):
            raise UnsafePickleError(f"numpy array of shape {shape} and dtype {dt.dtype} needs "
                                    f"{need} bytes of data, the file holds {len(raw)}")
        self.array = np.frombuffer(bytes(raw), dtype=dt.dtype).reshape(
            shape, order="F" if fortran else "C")


def _short(obj, n=60):
    text = repr(obj)
    return text if len(text) <= n else text[:n] + "..."


def _np_reconstruct(cls, shape, dtype):
    # numpy pickles an ndarray as _reconstruct(ndarray, (0,), b'b') + BUILD(state with the data).
    if cls is not _NDARRAY:
        raise UnsafePickleError(f"numpy _reconstruct of {_short(cls)} refused")
    if shape != (0,):
        raise UnsafePickleError(f"numpy _reconstruct with shape {_short(shape)} refused (numpy "
                                "pickles use (0,); the real shape comes with the data)")
    return _PickledArray()


def _np_dtype(name, align=False, copy=True):
    if isinstance(name, bytes):  # Python-2 pickles, read with encoding="bytes"
        name = name.decode("latin1")
    if not isinstance(name, str) or len(name) > 8:
        raise UnsafePickleError(f"numpy dtype {_short(name)} refused (only bool/int/uint/float)")
    try:
        dt = np.dtype(name)
    except TypeError:
        raise UnsafePickleError(f"numpy dtype {_short(name)} refused (not a dtype)") from None
    if dt.kind not in "biuf" or dt.hasobject or dt.fields is not None or dt.subdtype is not None:
        raise UnsafePickleError(f"numpy dtype {dt} refused (only bool/int/uint/float)")
    return _PickledDtype(dt)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, _PickledDtype):
        raise UnsafePickleError(f"numpy scalar of dtype {_short(dtype)} refused")
    if not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise UnsafePickleError(f"numpy {dtype.dtype} scalar with data {_short(data)} refused")
    return np.frombuffer(data, dtype=dtype.dtype, count=1)[0]


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    # Protocol-2 pickles of bytes made by Python 3 use _codecs.encode(str, 'latin1').
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafePickleError(f"_codecs.encode({type(obj).__name__}, {_short(encoding)}) "
                                "refused")
    return obj.encode("latin1")


def _bytearray(*args):
    # bytearray(b"..."), or bytearray(str, "latin-1") in protocol 2; never bytearray(size).
    if args and isinstance(args[0], (bytes, bytearray)) and len(args) == 1:
        return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return bytearray(args[0], "latin1")
    if not args:
        return bytearray()
    raise UnsafePickleError(f"bytearray{_short(tuple(type(a).__name__ for a in args))} refused")


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _np_dtype,
    ("_codecs", "encode"): _codecs_encode,  # py3 protocol-2 pickles of bytes
    ("builtins", "bytearray"): _bytearray,
    ("__builtin__", "bytearray"): _bytearray,
}

_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _check_opcodes(data: bytes, where: str) -> None:
    """Walk the pickle's opcodes without running them (pickletools): structural damage is found
    here, and a memo index larger than the pickle (the C unpickler would allocate and zero a memo
    table of that size: gigabytes from a few bytes) is refused."""
    for count, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(data))):
        if op.name in _MEMO_PUTS and not 0 <= arg <= count:
            raise UnsafePickleError(f"{where}: memo index {arg} at opcode {count} refused (a "
                                    "pickle numbers its memo entries from 0)")


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


def _unpickle_bin(path: Path):
    """The object in a .bin, through the opcode check and the restricted unpickler. Any failure
    is UnsafePickleError or ValueError naming the file; nothing else escapes (random bytes give
    MemoryError, OverflowError, AttributeError... inside the unpickler)."""
    data = path.read_bytes()  # unpickled from memory: no read is larger than the file
    try:
        _check_opcodes(data, str(path))
        obj = _RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except UnsafePickleError as e:
        msg = str(e)
        raise UnsafePickleError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except Exception as e:
        raise ValueError(f"{path}: not a readable .bin pickle ({type(e).__name__}: "
                         f"{_short(str(e), 200)})") from None
    return obj


def _plain(obj, path, what):
    """An unpickled array placeholder as its ndarray."""
    if isinstance(obj, _PickledArray):
        if obj.array is None:
            raise UnsafePickleError(f"{path}: {what} is a numpy array without data")
        return obj.array
    return obj


def read_bin_raw(path):
    """(list of encoded image bytes, bool array issame) of an insightface .bin, safely unpickled.

    Errors name the file: UnsafePickleError (a pickle.UnpicklingError) for anything but plain
    data, ValueError for the rest (damaged pickle, wrong structure, wrong counts)."""
    path = Path(path)
    obj = _unpickle_bin(path)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise ValueError(f"{path}: a .bin holds (images, issame); got {type(obj).__name__}")
    bins, issame = (_plain(v, path, w) for v, w in zip(obj, ("the image list", "issame")))
    if not isinstance(bins, (list, tuple)):
        raise ValueError(f"{path}: the images of a .bin are a list, got {type(bins).__name__}")
    images, converted = [], {}
    for k, b in enumerate(bins):
        b = _plain(b, path, f"image record {k}")
        if isinstance(b, np.ndarray) and b.dtype == np.uint8:
            if id(b) not in converted:  # one copy per stored array, however often it is used
                converted[id(b)] = b.tobytes()
            b = converted[id(b)]
        if not isinstance(b, (bytes, bytearray)):
            raise ValueError(f"{path}: image record {k} is {type(b).__name__}, expected bytes")
        images.append(bytes(b))
    if isinstance(issame, np.ndarray):
        if issame.ndim > 1:
            raise ValueError(f"{path}: issame has shape {issame.shape}, expected a list")
        issame = issame.tolist()
    if not isinstance(issame, (list, tuple)):
        raise ValueError(f"{path}: issame of a .bin is a list, got {type(issame).__name__}")
    flags = []
    for k, s in enumerate(issame):
        s = _plain(s, path, f"issame flag {k}")
        if not isinstance(s, (bool, int, np.bool_, np.integer)) or int(s) not in (0, 1):
            raise ValueError(f"{path}: issame flag {k} is {_short(s)}, expected a bool")
        flags.append(bool(s))
    issame = np.asarray(flags, dtype=bool)
    if len(images) != 2 * len(issame):
        raise ValueError(f"{path}: {len(images)} images for {len(issame)} pairs "
                         f"(a .bin holds 2 images per pair)")
    return images, issame


def decode_image_bytes(data, where="image bytes") -> Image.Image:
    """Decode encoded image bytes (JPEG/PNG/PGM...) to PIL RGB; errors (ImageDecodeError) name
    ``where``. The project's one decoder (zoo.data._images.decode_rgb)."""
    return decode_rgb(bytes(data), where)


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
    sweep_stale_tmp(path.parent)

    def write(tmp):
        with open(tmp, "wb") as f:
            pickle.dump((images, flags), f, protocol=4)

    atomic_write_files(path.parent, [(path.name, write)])  # the one temp naming (zoo._io)
    return path


def _check_decodes(path, where=None) -> None:
    """ImageDecodeError (naming ``path``, and ``where`` it was listed) unless it decodes."""
    try:
        load_rgb(path)
    except ImageDecodeError as e:
        raise ImageDecodeError(f"{e}" + (f" (listed in {where})" if where else "")) from None


def make_bin_from_pairs(dataset_paths, pairs, out_path, verify=True):
    """Write a .bin of ``pairs`` (rows i, j, is_same, ...) over a list of image file paths.

    The files' bytes are stored verbatim (no re-encoding) so they read back byte for byte. With
    ``verify`` every image is decoded first and an undecodable one raises ImageDecodeError naming
    it, before anything is written (read_bin would otherwise fail on the whole set).
    """
    pairs = np.asarray(pairs).reshape(len(pairs), -1)
    if verify:
        for idx in sorted({int(i) for row in pairs for i in row[:2]}):
            _check_decodes(dataset_paths[idx])
    images = []
    for row in pairs:
        for idx in (int(row[0]), int(row[1])):
            images.append(Path(dataset_paths[idx]).read_bytes())
    return write_bin(out_path, images, pairs[:, 2].astype(bool))


def make_bin_from_dataset(dataset, out_path, num_folds=10, pairs_per_fold=None, seed=0,
                          verify=True, skipped=None):
    """Write a .bin of balanced pairs (:func:`verification_pairs`) over a file-backed labelled
    dataset (``.paths`` and ``.labels``: ORLFaces, IdentityFolder); returns the number of pairs.

    With ``verify`` every image is decoded first; undecodable ones are left out before the pairs
    are drawn and appended to ``skipped`` (a list, when given) as (path, reason)."""
    paths, labels = list(dataset.paths), list(dataset.labels)
    if verify:
        keep = []
        for k, p in enumerate(paths):
            try:
                _check_decodes(p)
                keep.append(k)
            except (ImageDecodeError, OSError) as e:
                if skipped is not None:
                    skipped.append((str(p), str(e)))
        paths, labels = [paths[k] for k in keep], [labels[k] for k in keep]
    pairs = verification_pairs(labels, num_folds, pairs_per_fold, seed)
    make_bin_from_pairs(paths, pairs, out_path, verify=False)
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
    (``root/name/name_%04d.<ext>``), stored verbatim; returns the number of pairs. A missing or
    undecodable image raises FileNotFoundError / ImageDecodeError naming it and the pairs file,
    before anything is written (the pairs are the protocol: none is dropped)."""
    rows = lfw_pair_paths(read_lfw_pairs(pairs_path), root, ext)
    images, checked = [], set()
    for a, b, _, _ in rows:
        for path in (a, b):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: image named in {pairs_path} not found")
            if path not in checked:  # refused on write, not when the .bin is read
                _check_decodes(path, pairs_path)
                checked.add(path)
            images.append(path.read_bytes())
    write_bin(out_path, images, [r[2] for r in rows])
    return len(rows)
