"""insightface ``.bin`` verification sets (lfw.bin, cfp_ff.bin, agedb_30.bin, calfw.bin, ...):
reading and writing.

A ``.bin`` is a pickle of ``(list of encoded image bytes, list of is_same flags)``, images in
pair order (2 per pair). A pickle can run arbitrary code when loaded, so it is read with a
restricted unpickler that builds only plain containers, bytes, numbers, bools and uint8/bool
numpy arrays and refuses every other global, after an opcode pre-scan that refuses memo indices
larger than the pickle (see docs/data.md, "The .bin safety rule"). zoo.data.verification
re-exports the public names and builds ``.bin`` files from pairs.
"""
import io
import math
import pickle
import pickletools
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .._io import atomic_write_files, sweep_stale_tmp
from .images import decode_rgb


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
    ``where``. The project's one decoder (zoo.data.images.decode_rgb)."""
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
