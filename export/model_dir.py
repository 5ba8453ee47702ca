"""Opening an exported model folder: one ONNX file as an onnxruntime session plus its zoo metadata.

    m = ExportedModel("out/", EMBEDDING_FILE, device="auto", threads=None)
    m.metadata, m.input_size, m.mean, m.std, m.channel_order, m.providers
    m.run(m.preprocess([img]), [EMBEDDING_OUTPUT])

Validation happens at open time, so a bad folder fails with one ModelDirError naming the file,
not inside onnxruntime: the folder and the file exist, onnxruntime loads it, the zoo metadata is
there and well formed (input_size, mean, std, channel_order), the graph's input and outputs
(names, types, shapes) match the file's role and its metadata, and the folder's other file
carries the same export id. Also here: onnx_metadata (the metadata of an ONNX file read without
onnx) and select_providers (CPU / CUDA, with the GPU detected without torch).

Used by export.verifier (FaceVerifier), export.explainer (FaceExplainer) and
export.channel_evidence (head.onnx, whose input is the target maps, not images); must not
import torch.
"""
from __future__ import annotations

import ctypes
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .images import ImageLike, preprocess
from .model_files import (
    EMBEDDING_FILE,
    EMBEDDING_OUTPUT,
    FEATURE_OUTPUT,
    FEATUREMAP_FILE,
    HEATMAP_OUTPUT,
    INPUT_NAME,
    MASK_OUTPUT,
)

__all__ = ["ExportedModel", "ModelDirError", "onnx_metadata", "select_providers", "HEAD_FILE",
           "CHANNEL_TERMS_OUTPUT", "HEAD_BIAS_OUTPUT", "model_file", "EMBEDDING_INT8_FILE",
           "FEATUREMAP_INT8_FILE", "PRECISIONS"]

# head.onnx (export.channel_evidence): the embedding head after the target layer on its own,
# target maps -> the embedding's per-channel terms and its bias (sum of both = the embedding
# before normalisation), so a verification can be split by channel and part.
HEAD_FILE = "head.onnx"
CHANNEL_TERMS_OUTPUT = "channel_terms"
HEAD_BIAS_OUTPUT = "head_bias"


class ModelDirError(FileNotFoundError):
    """The model folder lacks an exported file, the file is not a zoo export, its graph does not
    match its metadata (names, shapes), or the folder mixes files of two exports."""


# Which file is which: the outputs each file must have, with their types. A file whose outputs
# are the other file's was renamed or swapped.
_OUTPUTS = {EMBEDDING_FILE: {EMBEDDING_OUTPUT: "tensor(float)"},
            FEATUREMAP_FILE: {FEATURE_OUTPUT: "tensor(float)", HEATMAP_OUTPUT: "tensor(float)",
                              MASK_OUTPUT: "tensor(bool)"},
            HEAD_FILE: {CHANNEL_TERMS_OUTPUT: "tensor(float)", HEAD_BIAS_OUTPUT: "tensor(float)"}}
# The input each file takes: images, except the head, which takes the target maps.
_INPUT_NAMES = {HEAD_FILE: FEATURE_OUTPUT}

# int8 versions (`python -m zoo.exporting --int8`, zoo.exporting.quantize): the float file's
# interface, quantized inside; chosen with precision="int8" (FaceVerifier, FaceExplainer).
EMBEDDING_INT8_FILE = "embedding-int8.onnx"
FEATUREMAP_INT8_FILE = "featuremap-int8.onnx"
PRECISIONS = ("float", "int8")
_INT8_OF = {EMBEDDING_FILE: EMBEDDING_INT8_FILE, FEATUREMAP_FILE: FEATUREMAP_INT8_FILE}
_OUTPUTS.update({q: _OUTPUTS[f] for f, q in _INT8_OF.items()})


def model_file(fname: str, precision: str = "float") -> str:
    """The file of ``fname`` (EMBEDDING_FILE or FEATUREMAP_FILE) at ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return _INT8_OF[fname] if precision == "int8" else fname


# ----------------------------------------------------------------------------------------------
# ONNX metadata without onnx (the runtime's dependencies are onnxruntime, numpy and Pillow)
# ----------------------------------------------------------------------------------------------

def _varint(read) -> int:
    value = shift = 0
    while True:
        b = read(1)
        if not b:
            raise ValueError("unexpected end of data in a varint")
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
        shift += 7
        if shift >= 64:
            raise ValueError("malformed varint")


def _fields(read, skip, end):
    """(field number, length) of each length-delimited field of the protobuf message read by
    ``read`` until ``end()``; the caller reads or skips those bytes. Other fields are skipped."""
    while not end():
        tag = _varint(read)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _varint(read)
        elif wire in (1, 5):
            skip(8 if wire == 1 else 4)
        elif wire == 2:
            yield field, _varint(read)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def onnx_metadata(path: Union[str, os.PathLike]) -> Dict[str, str]:
    """metadata_props of an ONNX file (ModelProto field 14), read without onnx or onnxruntime:
    only the top-level fields are walked and the graph is skipped by its length, so this costs
    a few reads whatever the file's size. ValueError on a malformed file."""
    path = Path(path)
    size = path.stat().st_size
    meta: Dict[str, str] = {}
    with open(path, "rb") as f:
        for field, n in _fields(f.read, lambda k: f.seek(k, 1), lambda: f.tell() >= size):
            if n > size - f.tell():
                raise ValueError(f"a field of {n} bytes runs past the end of the file")
            if field != 14:
                f.seek(n, 1)
                continue
            entry = io.BytesIO(f.read(n))
            pair = {1: "", 2: ""}
            for sub, m in _fields(entry.read, lambda k: entry.seek(k, 1),
                                  lambda: entry.tell() >= n):
                data = entry.read(m)
                if len(data) != m:
                    raise ValueError("truncated metadata entry")
                if sub in pair:
                    pair[sub] = data.decode("utf-8")
            meta[pair[1]] = pair[2]
    return meta


# ----------------------------------------------------------------------------------------------
# onnxruntime sessions
# ----------------------------------------------------------------------------------------------

def _cuda_device_count() -> int:
    """CUDA devices seen by the driver, without torch; 0 when there is no driver."""
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
        except OSError:
            continue
        try:
            if cuda.cuInit(0) != 0:
                return 0
            n = ctypes.c_int(0)
            return n.value if cuda.cuDeviceGetCount(ctypes.byref(n)) == 0 else 0
        except AttributeError:
            return 0
    return 0


def select_providers(device: str = "auto") -> List[str]:
    """onnxruntime providers: CUDA when requested/available and a GPU is present, else CPU.

    onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU and logs errors
    when asked to use it there, so a GPU must actually be present before it is requested."""
    import onnxruntime as ort
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    has_cuda = "CUDAExecutionProvider" in available and _cuda_device_count() > 0
    if device == "cuda" and not has_cuda:
        raise RuntimeError("device='cuda' requested but onnxruntime has no usable CUDA provider "
                           f"(available: {available}; CUDA devices: {_cuda_device_count()})")
    return (["CUDAExecutionProvider", "CPUExecutionProvider"] if has_cuda
            else ["CPUExecutionProvider"])


class ExportedModel:
    """An ONNX session plus the zoo metadata stored in the file."""

    def __init__(self, model_dir: Union[str, os.PathLike], fname: str, device: str,
                 threads: Optional[int]):
        import onnxruntime as ort
        folder = Path(model_dir)
        if not folder.is_dir():
            raise ModelDirError(f"{folder}: model folder not found (export one with "
                                "`python -m zoo.exporting NAME --out DIR`)")
        path = folder / fname
        if not path.is_file() and fname in _INT8_OF.values():
            raise ModelDirError(f"{path}: missing; {folder} has no int8 model (export it with "
                                f"`python -m zoo.exporting NAME --out {folder} --int8`, or "
                                "use "
                                "precision 'float')")
        if not path.is_file():
            raise ModelDirError(f"{path}: missing; {folder} is not a complete export (expected "
                                f"{EMBEDDING_FILE} and {FEATUREMAP_FILE} from `python -m "
                                "zoo.exporting`)")
        so = ort.SessionOptions()
        so.log_severity_level = 3  # warnings off: the CPU fallback below is reported once
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
        providers = select_providers(device)
        ort.set_default_logger_severity(3)
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise ModelDirError(f"{path}: onnxruntime cannot load this file ({exc})") from None
        self.providers = self.session.get_providers()
        if providers[0] == "CUDAExecutionProvider" and self.providers[0] != providers[0]:
            warnings.warn(f"{path}: CUDA provider failed to load, running on CPU")
        meta = self.session.get_modelmeta().custom_metadata_map
        if "input_size" not in meta or "model_name" not in meta:
            raise ModelDirError(f"{path}: no zoo metadata (input_size, model_name); export it "
                                "with `python -m zoo.exporting`")
        self.path = path
        self.metadata: Dict[str, str] = dict(meta)
        self.input_size = self.meta_int("input_size")
        self.mean = self._meta_triple("mean", "[0.5, 0.5, 0.5]")
        self.std = self._meta_triple("std", "[0.5, 0.5, 0.5]")
        if not all(v > 0 for v in self.std):
            raise ModelDirError(f"{path}: metadata std must be > 0, got {self.std}")
        self.channel_order = meta.get("channel_order", "RGB")
        if self.channel_order not in ("RGB", "BGR"):
            raise ModelDirError(f"{path}: metadata channel_order must be RGB or BGR, got "
                                f"{self.channel_order!r}")
        self.model_name = meta["model_name"]
        self.precision = meta.get("precision", "float")
        if self.precision != ("int8" if fname in _INT8_OF.values() else "float"):
            raise ModelDirError(f"{path}: metadata precision is {self.precision!r}, which does "
                                "not match the file name (files renamed?)")
        self._check_graph(fname)
        self._check_same_export(folder, fname)
        self._check_parts_weights()

    def meta_int(self, key: str, minimum: int = 1) -> Optional[int]:
        """An integer metadata value (None when absent); ModelDirError naming the file if bad."""
        raw = self.metadata.get(key)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise ModelDirError(f"{self.path}: metadata {key} must be an integer >= {minimum}, "
                                f"got {raw!r}")
        return value

    def _meta_triple(self, key: str, default: str) -> List[float]:
        raw = self.metadata.get(key, default)
        try:
            vals = json.loads(raw)
        except json.JSONDecodeError:
            vals = None
        if (not isinstance(vals, list) or len(vals) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in vals)):
            raise ModelDirError(f"{self.path}: metadata {key} must be a JSON list of 3 finite "
                                f"numbers, got {raw!r}")
        return [float(v) for v in vals]

    def _check_graph(self, fname: str) -> None:
        """Input and output names, types and shapes against the metadata: a swapped or renamed
        file, or metadata that disagrees with the graph, fails here, not inside onnxruntime."""
        inputs = self.session.get_inputs()
        self.input_name = _INPUT_NAMES.get(fname, INPUT_NAME)
        if len(inputs) != 1 or inputs[0].name != self.input_name:
            raise ModelDirError(f"{self.path}: graph inputs {[i.name for i in inputs]}, expected "
                                f"one input {self.input_name!r}")
        s, n = self.input_size, self.meta_int("feature_size")
        c, d = self.meta_int("feature_channels"), self.meta_int("embedding_dim")
        want_in = (None, c, n, n) if self.input_name == FEATURE_OUTPUT else (None, 3, s, s)
        self._check_shape(f"input {self.input_name!r}", inputs[0], "tensor(float)", want_in)
        outputs = {o.name: o for o in self.session.get_outputs()}
        expected = _OUTPUTS[fname]
        missing = [name for name in expected if name not in outputs]
        if missing:
            other = [f for f, outs in _OUTPUTS.items() if f != fname and set(outs) <= set(outputs)]
            hint = f" (these are the outputs of {other[0]}: files swapped?)" if other else ""
            raise ModelDirError(f"{self.path}: graph outputs {sorted(outputs)}, expected "
                                f"{sorted(expected)}{hint}")
        shapes = {EMBEDDING_OUTPUT: (None, d), FEATURE_OUTPUT: (None, c, n, n),
                  HEATMAP_OUTPUT: (None, c, s, s), MASK_OUTPUT: (None, c, s, s),
                  CHANNEL_TERMS_OUTPUT: (None, c, d), HEAD_BIAS_OUTPUT: (None, d)}
        for name, dtype in expected.items():
            self._check_shape(f"output {name!r}", outputs[name], dtype, shapes[name])

    def _check_shape(self, what: str, arg, dtype: str, want: Sequence[Optional[int]]) -> None:
        shape = list(arg.shape) if arg.shape is not None else None
        if arg.type != dtype:
            raise ModelDirError(f"{self.path}: {what} has type {arg.type}, expected {dtype}")
        if shape is None or len(shape) != len(want):
            raise ModelDirError(f"{self.path}: {what} has shape {shape}, expected rank "
                                f"{len(want)}")
        for got, exp in zip(shape, want):  # symbolic dims (str/None) are not checked
            if isinstance(got, int) and exp is not None and got != exp:
                shown = ["B" if e is None else e for e in want]
                raise ModelDirError(f"{self.path}: {what} has shape {shape} but the metadata "
                                    f"(input_size, feature_size, feature_channels, "
                                    f"embedding_dim) says {shown}")

    def _check_same_export(self, folder: Path, fname: str) -> None:
        """Refuse a folder whose ONNX files (embedding, featuremap, head) carry different
        export ids (files of two exports); files without an id (older exports) are accepted."""
        mine = self.metadata.get("export_id")
        if not mine:
            return
        for other_name in _OUTPUTS:
            other_path = folder / other_name
            if other_name == fname or not other_path.is_file():
                continue
            try:
                other = onnx_metadata(other_path).get("export_id")
            except (OSError, ValueError):  # unreadable: it fails when it is opened itself
                continue
            if other and other != mine:
                raise ModelDirError(f"{self.path}: export id {mine} but {other_path} has "
                                    f"{other}: the folder mixes files of two exports; export "
                                    "again into an empty folder")

    def _check_parts_weights(self) -> None:
        """Refuse an embedded channel table computed from other weights than the exported ones
        (both record the weights' sha256; older exports record none and are not checked)."""
        mine, raw = self.metadata.get("weights_sha256"), self.metadata.get("channel_parts")
        if not mine or not raw:
            return
        try:
            theirs = json.loads(raw).get("weights_sha256")
        except (ValueError, AttributeError):  # a bad table fails where it is read
            return
        if theirs and theirs != mine:
            name = self.metadata.get("model_name", "MODEL")
            raise ModelDirError(f"{self.path}: the embedded channel table was computed from "
                                f"other weights (sha256 {theirs[:12]}...) than the exported "
                                f"ones ({mine[:12]}...); rerun `python -m zoo.evaluate {name}` "
                                f"and `python -m zoo.exporting {name}`")

    def preprocess(self, images: Sequence[ImageLike], first_index: int = 0) -> np.ndarray:
        return preprocess(images, self.input_size, self.mean, self.std, self.channel_order,
                          first_index=first_index)

    def run(self, x: np.ndarray, outputs: Sequence[str]) -> List[np.ndarray]:
        try:
            return self.session.run(list(outputs), {self.input_name: x})
        except Exception as exc:  # onnxruntime's Fail / InvalidArgument / RuntimeException
            raise RuntimeError(f"{self.path}: onnxruntime failed to run the model "
                               f"({type(exc).__name__}: {exc})") from None
