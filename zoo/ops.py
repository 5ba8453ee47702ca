"""Python side of the compiled extension zoo._C (csrc/): loading and the fused MI op.

The op library is optional: ``extension_available()`` says whether it loaded, and
``extension_error()`` why not. zoo works without it (zoo.ecloss falls back to the reference).
"""
from __future__ import annotations

import torch

_loaded = None
_error = None


def _load() -> bool:
    global _loaded, _error
    if _loaded is None:
        try:
            from . import _C  # noqa: F401  registers torch.ops.zoo.*
            _loaded = True
        except ImportError as e:  # not built, or built against another torch
            _loaded, _error = False, f"{type(e).__name__}: {e}"
    return _loaded


def extension_available() -> bool:
    return _load()


def extension_error() -> str | None:
    _load()
    return _error


def fused_mutual_information(x: torch.Tensor, templates: torch.Tensor,
                             marginal: str = "uniform") -> torch.Tensor:
    raise NotImplementedError("the fused op arrives with csrc/ (issue 7)")
