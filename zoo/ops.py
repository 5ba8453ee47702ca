"""Python side of the compiled extension zoo._C (csrc/): loading and the fused MI op.

The op library is optional: ``extension_available()`` says whether it loaded, and
``extension_error()`` why not. zoo works without it (zoo.ecloss falls back to the reference).

Ops (schemas in csrc/ops.cpp, algorithm in docs/kernels.md):

* ``torch.ops.zoo.mi_forward(x, templates, batch_marginal, with_grad)`` ->
  ``(mi, stats, log_q, grad)``: MI of paper Eq. 5-6 plus the O(N + M) statistics the backward
  needs (stats (N, 3): max logit, log-sum-exp above it, row MI; log_q (M): log marginal); with
  ``with_grad`` also dMI/dx (N, K), computed while each block's logits are still in cache (no
  recompute), else an empty (0, K) tensor.
* ``torch.ops.zoo.mi_backward(grad_mi, x, templates, stats, log_q)`` -> grad_mi * dMI/dx,
  recomputing the logits block by block (used when the forward did not produce the gradient).
* ``torch.ops.zoo.has_cuda()``: whether the extension was built with its CUDA kernels.

Diagnostics for tests and benchmarks live apart, in ``torch.ops.zoo_diag`` (not public API):
``cpu_variant()`` names the SIMD variant of the CPU row kernel ("avx512", "avx2" or "scalar";
``ZOO_SIMD`` caps it) and ``parallel_threads_used(items)`` counts the threads at::parallel_for
used (1 means the build lacks -fopenmp).

Autograd and fake (meta) kernels are registered here with torch.library, so the op works under
torch.compile. The op is differentiable with respect to the maps only (templates are fixed).
"""
from __future__ import annotations

import torch

from .config import MARGINALS
from .templates import flatten_maps

_loaded = None
_error = None


def _load() -> bool:
    global _loaded, _error
    if _loaded is None:
        try:
            from . import _C  # noqa: F401  registers torch.ops.zoo.*, zoo_diag.*
            _register_python_parts()
            _loaded = True
        except (ImportError, OSError) as e:  # not built, or built against another torch
            _loaded, _error = False, f"{type(e).__name__}: {e}"
    return _loaded


def extension_available() -> bool:
    return _load()


def extension_error() -> str | None:
    _load()
    return _error


def has_cuda() -> bool:
    """True when the compiled extension contains the CUDA kernels (built with nvcc)."""
    return _load() and bool(torch.ops.zoo.has_cuda())


def _register_python_parts() -> None:
    """Fake kernels and autograd of the C++ ops (once, after zoo._C registered the schemas)."""

    @torch.library.register_fake("zoo::mi_forward")
    def _mi_forward_fake(x, templates, batch_marginal, with_grad):
        n, k = x.shape
        m = templates.shape[0]
        return (x.new_empty(()), x.new_empty((n, 3)), x.new_empty((m,)),
                x.new_empty((n, k) if with_grad else (0, k)))

    @torch.library.register_fake("zoo::mi_backward")
    def _mi_backward_fake(grad_mi, x, templates, stats, log_q):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def _setup_context(ctx, inputs, output):
        x, templates, _batch, with_grad = inputs
        _mi, stats, log_q, grad = output
        ctx.with_grad = with_grad
        if with_grad:
            ctx.save_for_backward(grad)
        else:
            ctx.save_for_backward(x, templates, stats, log_q)

    # The backward is not itself differentiable (the saved gradient is a constant to autograd):
    # once_differentiable makes a double backward fail loudly instead of returning zeros.
    @torch.autograd.function.once_differentiable
    def _backward(ctx, grad_mi, _g_stats, _g_lq, _g_grad):
        # Only MI is differentiable: the statistics and the precomputed gradient are outputs
        # for the backward, their incoming gradients are ignored (documented in the schema).
        if ctx.with_grad:
            (grad,) = ctx.saved_tensors
            gx = grad * grad_mi
        else:
            x, templates, stats, log_q = ctx.saved_tensors
            gx = torch.ops.zoo.mi_backward(grad_mi, x, templates, stats, log_q)
        return gx, None, None, None

    torch.library.register_autograd("zoo::mi_forward", _backward, setup_context=_setup_context)


_DTYPES = (torch.float32, torch.float64)


def fused_mutual_information(x: torch.Tensor, templates: torch.Tensor,
                             marginal: str = "uniform") -> torch.Tensor:
    """Paper Eq. 5 through the fused op: same contract as zoo.ecloss.mutual_information_reference.

    x: (B, C, n, n) or (N, n*n) maps; templates: (M, n, n) or (M, n*n); float32 or float64, same
    dtype and device. Differentiable with respect to x (not the templates).
    """
    if not extension_available():
        raise RuntimeError(f"the compiled extension zoo._C is not available: {_error}")
    if marginal not in MARGINALS:
        raise ValueError(f"marginal must be one of {MARGINALS}, got {marginal!r}")
    x, templates = flatten_maps(x, templates)  # shapes, empty batch, dtype/device mismatch
    if x.dtype not in _DTYPES:
        raise TypeError(f"the fused MI op supports float32 and float64, got {x.dtype}")
    if templates.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError("the fused MI op does not differentiate with respect to the "
                                  "templates; use impl='reference' for learnable templates")
    if x.device.type not in ("cpu", "cuda"):
        raise ValueError(f"the fused MI op runs on cpu and cuda, got {x.device}")
    if x.device.type == "cuda" and not has_cuda():
        raise RuntimeError("maps are on CUDA but zoo._C was built without its CUDA kernels "
                           "(rebuild with nvcc and a CUDA torch)")
    x = x.contiguous()
    templates = templates.contiguous()
    with_grad = torch.is_grad_enabled() and x.requires_grad
    mi = torch.ops.zoo.mi_forward(x, templates, marginal == "batch", with_grad)[0]
    return mi
