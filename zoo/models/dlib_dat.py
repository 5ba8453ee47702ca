"""Reader of dlib's binary network files (``dlib::serialize`` of a ``dnn`` net), numpy only.

    net = read_dlib_dat("dlib_face_recognition_resnet_model_v1.dat")
    net.loss.attrs            # {"margin": 0.04, "distance_threshold": 0.6}
    [l.kind for l in net.layers][:5]   # ['input_rgb_image', 'con', 'affine', 'relu', 'max_pool']

Reads the records that dlib's face descriptor network (``anet_type`` of dlib's
examples/dnn_face_recognition_ex.cpp) is made of, as dlib 19.x / 20.x writes them
(dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h, tensor.h):

- integers: a control byte (bit 0x80 the sign, the low 4 bits the number of bytes that follow,
  bits 0x70 always 0), then the magnitude's bytes, little-endian;
- floats (scalar fields): two integers, a mantissa and an exponent: value = mantissa * 2**exponent
  (exponents 32000 / 32001 / 32002 stand for +inf / -inf / nan);
- strings: the length as an integer, then the bytes; bools: the character '1' or '0';
- tensors (``resizable_tensor``, version 2): num_samples, k, nr, nc as integers, then the
  num_samples * k * nr * nc values as 4-byte little-endian IEEE floats;
- alias tensors (views into a layer's ``params``): version 1, then num_samples, k, nr, nc; the
  views lie one after another in ``params`` (e.g. a conv's filters, then its biases).

The net is nested wrappers, serialised from the loss layer down: ``add_loss_layer`` (version 1,
the loss, then the rest), ``add_layer`` (version 2: its sub-network first, then the layer's own
record and bookkeeping: three bools and the x_grad, cached_output and params_grad tensors),
``add_layer`` directly on the input layer (version 3: the input layer, the layer, three bools,
three tensors and the sample expansion factor), ``add_tag_layer`` / ``add_skip_layer`` (version 1
and the sub-network: the file does not say which, nor the tag's number). So the file lists the
wrappers' headers from the top down, then the layer records from the input up: ``layers`` is that
bottom-up order, with a ``tag`` entry for each tag or skip wrapper.

Layer records read (their version strings): ``input_rgb_image_sized`` (the per-channel means,
rows, columns), ``con_4`` (params, num_filters, nr, nc, stride y / x, padding y / x, the filters
and biases views, four learning-rate / weight-decay multipliers), ``affine_`` (params, the gamma
and beta views, the mode: 0 conv, 1 fc), ``relu_``, ``max_pool_2`` / ``avg_pool_2`` (nr, nc,
stride y / x, padding y / x; 0 x 0 pools the whole plane), ``add_prev_``, ``fc_2`` (num_outputs,
num_inputs, params, the weights and biases views, the bias mode: 0 with bias, 1 without, four
multipliers), and the losses ``loss_metric_`` / ``loss_metric_2`` (margin, distance threshold).
Any other record, or a file that breaks the format anywhere (a bad control byte, a length past
the end, a view that does not tile its params, trailing bytes), raises DlibDatError (a ValueError)
naming the file, the byte offset and the record being read. Nothing is unpickled or executed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Union

import numpy as np

__all__ = ["DlibDatError", "DlibLayer", "DlibNet", "read_dlib_dat", "parse_dlib_dat"]

_FLOAT_SPECIAL = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
_MAX_NAME = 256           # longest record name accepted (dlib's are ~20 characters)
_MAX_DEPTH = 100_000      # wrappers; each costs at least 2 bytes of the file anyway
_POOLS = {"max_pool_2": "max_pool", "avg_pool_2": "avg_pool"}
_MULTIPLIERS = ("learning_rate_multiplier", "weight_decay_multiplier",
                "bias_learning_rate_multiplier", "bias_weight_decay_multiplier")


class DlibDatError(ValueError):
    """The file is not a dlib network file of the kind read here (or is damaged)."""


@dataclass
class DlibLayer:
    """One record: kind ("con", "fc", "affine", "relu", "max_pool", "avg_pool", "add_prev",
    "tag" (a tag or skip wrapper), "input_rgb_image", "loss_metric"), the version string in the
    file, the byte offset where it starts, scalar fields and float32 arrays."""
    kind: str
    record: str
    offset: int
    attrs: Dict[str, Union[int, float]] = field(default_factory=dict)
    arrays: Dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    path: str
    loss: DlibLayer
    layers: List[DlibLayer]   # from the input layer up, in the order dlib computes them


class _Reader:
    def __init__(self, data: bytes, path: str):
        self.data, self.path, self.pos, self.record = data, path, 0, "file header"

    def fail(self, what: str, at: int = None) -> DlibDatError:
        at = self.pos if at is None else at
        return DlibDatError(f"{self.path}: {what} at byte {at} (record {self.record!r}; "
                            f"file size {len(self.data)} bytes)")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {n} bytes needed, {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def integer(self) -> int:
        start = self.pos
        control = self.take(1)[0]
        size = control & 0x0F
        if control & 0x70 or size > 8:
            raise self.fail(f"bad integer control byte 0x{control:02x}", start)
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def count(self, what: str) -> int:
        start, value = self.pos, self.integer()
        if value < 0:
            raise self.fail(f"negative {what} {value}", start)
        return value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        if abs(exponent) > 2000:
            raise self.fail(f"float exponent {exponent} out of range")
        return float(mantissa * 2.0 ** exponent) if mantissa else 0.0

    def flag(self) -> bool:
        start, ch = self.pos, self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail(f"bool is not '0' or '1' but {ch!r}", start)
        return ch == b"1"

    def string(self) -> str:
        start, n = self.pos, self.count("string length")
        if n > _MAX_NAME:
            raise self.fail(f"string of {n} bytes (a record name is expected)", start)
        raw = self.take(n)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"record name is not ASCII: {raw[:32]!r}", start) from None

    def version(self, want, what: str) -> int:
        start, v = self.pos, self.integer()
        if v not in want:
            raise self.fail(f"{what} version {v} (expected {sorted(want)})", start)
        return v

    def tensor(self) -> np.ndarray:
        self.version({2}, "tensor")
        shape = tuple(self.count("tensor dimension") for _ in range(4))
        n = int(np.prod(shape, dtype=object))
        if 4 * n > len(self.data) - self.pos:
            raise self.fail(f"truncated: tensor of shape {shape} runs past the end of the file")
        return np.frombuffer(self.take(4 * n), "<f4").reshape(shape).astype(np.float32)

    def views(self, params: np.ndarray, names) -> Dict[str, np.ndarray]:
        """Alias tensors laid one after another over ``params``; they must tile it exactly."""
        flat, out, off = params.reshape(-1), {}, 0
        for name in names:
            self.version({1}, "alias_tensor")
            shape = tuple(self.count("alias dimension") for _ in range(4))
            n = int(np.prod(shape, dtype=object))
            if off + n > flat.size:
                raise self.fail(f"view {name} {shape} runs past its params ({flat.size} values)")
            out[name] = flat[off:off + n].reshape(shape)
            off += n
        if off != flat.size:
            raise self.fail(f"views cover {off} of the {flat.size} params values")
        return out


def _read_layer(r: _Reader) -> DlibLayer:
    start = r.pos
    r.record = "layer name"
    name = r.string()
    r.record = name
    layer = DlibLayer(kind="", record=name, offset=start)
    if name == "con_4":
        layer.kind = "con"
        params = r.tensor()
        for key in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
            layer.attrs[key] = r.integer()
        layer.arrays = r.views(params, ("filters", "biases"))
        layer.attrs.update({k: r.real() for k in _MULTIPLIERS})
    elif name == "affine_":
        layer.kind = "affine"
        layer.arrays = r.views(r.tensor(), ("gamma", "beta"))
        layer.attrs["mode"] = r.integer()
    elif name == "fc_2":
        layer.kind = "fc"
        layer.attrs["num_outputs"], layer.attrs["num_inputs"] = r.integer(), r.integer()
        params = r.tensor()
        layer.arrays = r.views(params, ("weights", "biases"))
        layer.attrs["bias_mode"] = r.integer()
        layer.attrs.update({k: r.real() for k in _MULTIPLIERS})
    elif name in _POOLS:
        layer.kind = _POOLS[name]
        for key in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
            layer.attrs[key] = r.integer()
    elif name in ("relu_", "add_prev_"):
        layer.kind = name[:-1]
    else:
        raise r.fail(f"unsupported layer record {name!r}", start)
    return layer


def _read_input(r: _Reader) -> DlibLayer:
    start = r.pos
    r.record = "input layer name"
    name = r.string()
    r.record = name
    if name != "input_rgb_image_sized":
        raise r.fail(f"unsupported input layer {name!r}", start)
    attrs = {"avg_red": r.real(), "avg_green": r.real(), "avg_blue": r.real(),
             "nr": r.integer(), "nc": r.integer()}
    return DlibLayer("input_rgb_image", name, start, attrs)


def _read_bookkeeping(r: _Reader, what: str) -> None:
    """add_layer's state after the layer: three bools and three (usually empty) tensors."""
    r.record = f"{what} state"
    for _ in range(3):
        r.flag()
    for _ in range(3):
        r.tensor()


def _read_loss(r: _Reader) -> DlibLayer:
    start = r.pos
    r.record = "loss name"
    name = r.string()
    r.record = name
    if name == "loss_metric_":        # dlib's first version: margin and threshold hard-coded
        return DlibLayer("loss_metric", name, start, {"margin": 0.1, "distance_threshold": 0.75})
    if name == "loss_metric_2":
        return DlibLayer("loss_metric", name, start,
                         {"margin": r.real(), "distance_threshold": r.real()})
    raise r.fail(f"unsupported loss layer {name!r}", start)


def parse_dlib_dat(data: bytes, path: str = "<bytes>") -> DlibNet:
    """Parse the bytes of a dlib net file (see the module docstring); path names it in errors."""
    r = _Reader(bytes(data), str(path))
    r.record = "add_loss_layer"
    r.version({1}, "add_loss_layer")
    loss = _read_loss(r)
    wrappers = []                     # "layer" or "tag", from the top down
    while True:
        r.record = f"wrapper {len(wrappers)}"
        v = r.version({1, 2, 3}, "add_layer / add_tag_layer / add_skip_layer")
        if v == 3:
            break
        wrappers.append("layer" if v == 2 else "tag")
        if len(wrappers) > _MAX_DEPTH:
            raise r.fail("too deeply nested")
    layers = [_read_input(r), _read_layer(r)]
    _read_bookkeeping(r, layers[-1].record)
    r.record = "sample expansion factor"
    if r.integer() < 1:
        raise r.fail("sample expansion factor below 1")
    for kind in reversed(wrappers):
        if kind == "tag":
            layers.append(DlibLayer("tag", "add_tag_layer/add_skip_layer", r.pos))
            continue
        layers.append(_read_layer(r))
        _read_bookkeeping(r, layers[-1].record)
    if r.pos != len(r.data):
        r.record = "end of net"
        raise r.fail(f"{len(r.data) - r.pos} unexpected bytes after the net")
    return DlibNet(str(path), loss, layers)


def read_dlib_dat(path: Union[str, os.PathLike]) -> DlibNet:
    """Read a dlib net file (e.g. dlib_face_recognition_resnet_model_v1.dat)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such dlib model file")
    return parse_dlib_dat(path.read_bytes(), str(path))
