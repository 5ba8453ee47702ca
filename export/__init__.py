"""Export of zoo face models to ONNX / TorchScript, and a runtime that needs only onnxruntime.

    python -m export vgg19-ecloss --out out/          # torch side: export + parity checks
    python -m export.runtime verify A.jpg B.jpg --model out/
    python -m export.runtime explain A.jpg --model out/ --out heat.png

This package file must not import torch (nor anything that does): ``export.runtime`` is used on
machines with only onnxruntime, numpy and Pillow. The torch side lives in
``export.onnx_export`` (and ``export.crop``), imported only by the export CLI and ``--crop``.
See docs/export.md.
"""
from .channel_table import TOP_FRACTION
from .model_files import (
    EMBEDDING_FILE,
    FEATUREMAP_FILE,
    FORMAT_VERSION,
    PARTS_FILE,
    TORCHSCRIPT_FILE,
)

__all__ = ["EMBEDDING_FILE", "FEATUREMAP_FILE", "TORCHSCRIPT_FILE", "PARTS_FILE",
           "TOP_FRACTION", "FORMAT_VERSION"]
