"""ECLoss: mutual information between channel feature maps and activation templates.

Paper equations (numbering of "Activation Template Matching Loss for Explainable Face
Recognition"; see docs/paper-notes.md):

* Eq. 6  ``template_log_posterior``: P(T|x) = softmax_T tr(x . T) over the template set.
* Eq. 5  ``mutual_information``:     MI(X;T) = sum_x P(x) sum_T P(T|x) log(P(T|x) / P(T)),
                                      with P(x) uniform over the maps of the batch and P(T)
                                      either uniform (the paper, "uniform") or the batch
                                      marginal mean_x P(T|x) ("batch").
* total loss ``total_loss``:           L = alpha * CE - beta * MI; ECLoss = -MI.
* ``content_free_term``                OUR EXTENSION: log(M P(T-|x)) on maps of content-free
                                      images (blank, noise), pushed towards the negative template.
* beta rule ``BetaPolicy``:            the paper's "changed automatically" made precise.

This module is the pure-PyTorch reference: the oracle for the fused kernels in csrc/ and the
fallback when they are not built. Everything is computed in log space (log-softmax and
log-sum-exp), so no tau or activation scale overflows.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Tuple

import torch
from torch import nn

from . import ops, templates as _templates
from .config import BETA_MODES, IMPLS, MARGINALS
from .templates import DEFAULT_BETA, flatten_maps

__all__ = [
    "template_logits", "template_log_posterior", "mutual_information_reference",
    "mutual_information", "total_loss", "BetaPolicy", "ECLoss", "content_free_term",
    "content_free_penalty", "mutual_information_across_ranks",
]


def template_logits(x: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """The exponent of Eq. 6: tr(x . T) = sum_uv x_uv T_uv for every map and template, (N, M)."""
    x, templates = flatten_maps(x, templates)
    return x @ templates.t()


def template_log_posterior(x: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 6: log P(T|x) = log softmax over templates of tr(x . T); (N, M)."""
    return torch.log_softmax(template_logits(x, templates), dim=1)


def mutual_information_reference(x: torch.Tensor, templates: torch.Tensor,
                                 marginal: str = "uniform") -> torch.Tensor:
    """Paper Eq. 5 in pure PyTorch: MI(X;T) with P(x) = 1/N over the N maps of the batch.

    marginal="uniform": P(T) = 1/M (the paper), MI = log M + mean_x sum_T p log p.
    marginal="batch":   P(T) = mean_x P(T|x), the plug-in MI estimate of the batch.
    """
    if marginal not in MARGINALS:
        raise ValueError(f"marginal must be one of {MARGINALS}, got {marginal!r}")
    x, templates = flatten_maps(x, templates)
    log_p = template_log_posterior(x, templates)                    # (N, M)
    p = log_p.exp()
    n_maps, m = log_p.shape
    if marginal == "uniform":
        log_prior = torch.full((m,), -math.log(m), dtype=x.dtype, device=x.device)
    else:
        log_prior = torch.logsumexp(log_p, dim=0) - math.log(n_maps)  # log mean_x P(T|x)
    return (p * (log_p - log_prior)).sum(dim=1).mean()


_warned_fallback = False


def mutual_information(x: torch.Tensor, templates: torch.Tensor, marginal: str = "uniform",
                       impl: str = "auto") -> torch.Tensor:
    """Eq. 5 through the fused extension when built (impl="auto"/"extension"), else the reference.

    impl="reference" always uses the pure-PyTorch oracle; impl="extension" fails if the compiled
    op is missing; impl="auto" uses the op for CPU tensors and warns once when it falls back.

    On CUDA tensors impl="auto" uses the reference (cuBLAS) unless ZOO_CUDA_KERNEL=1: the CUDA
    kernel is tested against the reference through a CPU emulation of its source but has not yet
    been validated and timed on a GPU (docs/performance.md); impl="extension" selects it.
    """
    global _warned_fallback
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "reference":
        return mutual_information_reference(x, templates, marginal)
    if impl == "auto" and x.is_cuda and os.environ.get("ZOO_CUDA_KERNEL") != "1":
        return mutual_information_reference(x, templates, marginal)
    if ops.extension_available():  # ops loads the compiled library on first use
        return ops.fused_mutual_information(x, templates, marginal)
    if impl == "extension":
        raise RuntimeError(f"impl='extension' but the compiled extension zoo._C is not available: "
                           f"{ops.extension_error()}")
    if not _warned_fallback:
        warnings.warn(f"zoo._C extension not available ({ops.extension_error()}); ECLoss uses "
                      f"the pure-PyTorch reference", RuntimeWarning, stacklevel=2)
        _warned_fallback = True
    return mutual_information_reference(x, templates, marginal)


def content_free_term(x: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """OUR EXTENSION (ICNN's negative images, Zhang et al. 2018, in this loss's terms): the mean
    over maps of log(M * P(T-|x)), where T- is the negative template (after Eq. 4; the last
    template of the canonical set) and P is Eq. 6.

    For post-ReLU maps every template is >= T- elementwise, so P(T-|x) <= 1/M and the term is
    <= 0, with equality exactly when all template correlations tie, i.e. x = 0. Maximising it on
    the maps of content-free images (blank, noise) teaches every channel not to fire where there
    is no face, which is what a channel that peaks at a fixed border cell whatever the input does.
    """
    x, templates = flatten_maps(x, templates)
    last = templates[-1]
    if not bool((last == last[0]).all()) or float(last[0]) >= 0:
        raise ValueError("the last template must be the negative template (-tau everywhere)")
    log_p = template_log_posterior(x, templates)
    return log_p[:, -1].mean() + math.log(templates.shape[0])


def content_free_penalty(term: torch.Tensor, weight: float) -> torch.Tensor:
    """The loss contribution of ``content_free_term``: -weight x term, with the term divided by
    max(1, |term|) (detached), so one step never adds more than ``weight`` to the loss.

    Why: a blank image at an extreme grey level can drive some maps of an untrained (or
    drifting) network very high, giving a term of -20 to -30 in a single step; that step's
    gradient then pushes every activation down, and on some seeds the network fell silent for
    good (MI 0.03 of 6.0 from epoch 5 on; docs/results.md). The direction of the gradient is
    kept, only its size is capped."""
    scale = torch.clamp(term.detach().abs(), min=1.0)
    return -weight * term / scale


def total_loss(ce: torch.Tensor, mi: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """The paper's training objective: L = alpha * CE - beta * MI (ECLoss = -MI)."""
    return alpha * ce - beta * mi


@dataclass
class BetaPolicy:
    """The weight beta of the MI term.

    mode="fixed": beta stays at ``beta``.
    mode="auto": the paper starts at 1e-5 (DEFAULT_BETA) and lets "the program change beta
    automatically to reduce the total loss". Since MI >= 0, raising beta always lowers
    L = alpha*CE - beta*MI, so taken literally the rule diverges. Our bounded reading: after every
    step, with the detached values of that step,

        beta <- clip(beta * (1 + rate))   if beta * MI < ratio * alpha * CE   (raise: lowers L)
        beta <- clip(beta / (1 + rate))   otherwise                             (MI term is big)
        clip to [beta_min, beta_max]

    i.e. beta grows geometrically while the MI term is below ``ratio`` of the classification
    term, and then hovers where beta*MI ~= ratio*alpha*CE, so ECLoss never dominates CE.
    """

    beta: float = DEFAULT_BETA
    mode: str = "fixed"
    ratio: float = 0.1
    rate: float = 0.1
    beta_min: float = DEFAULT_BETA
    beta_max: float = 1e6
    steps: int = field(default=0)

    def __post_init__(self):
        if self.mode not in BETA_MODES:
            raise ValueError(f"beta mode must be one of {BETA_MODES}, got {self.mode!r}")
        if self.beta < 0 or not math.isfinite(self.beta):
            raise ValueError(f"beta must be finite and >= 0, got {self.beta}")
        if self.mode == "auto":
            if not (0 < self.beta_min <= self.beta_max) or not (self.ratio > 0 and self.rate > 0):
                raise ValueError("auto beta needs 0 < beta_min <= beta_max, ratio > 0, rate > 0")
            self.beta = min(max(self.beta, self.beta_min), self.beta_max)

    def update(self, ce: float, mi: float, alpha: float = 1.0) -> float:
        """Advance one step with the step's CE and MI; returns the beta for the next step."""
        self.steps += 1
        if self.mode == "auto":
            ce, mi = float(ce), float(mi)
            if self.beta * mi < self.ratio * alpha * ce:
                self.beta = min(self.beta * (1.0 + self.rate), self.beta_max)
            else:
                self.beta = max(self.beta / (1.0 + self.rate), self.beta_min)
        return self.beta

    def state_dict(self) -> dict:
        return {"beta": self.beta, "mode": self.mode, "ratio": self.ratio, "rate": self.rate,
                "beta_min": self.beta_min, "beta_max": self.beta_max, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class ECLoss(nn.Module):
    """ECLoss = -MI(X;T) over all channel maps of the target layer (post-ReLU).

    Args:
        map_size: n of the n x n target maps (14 at 224 px input for VGG).
        num_templates: M of the evenly taken subset (paper 400), or "full".
        tau, radius: template amplitude and radius (paper 0.001 and 4 at n=14; radius=None
            scales 4 with the map, 4n/14).
        marginal: "uniform" (paper) or "batch".
        impl: "auto" (extension if built), "reference", or "extension".

    Experiments change the maps or the templates through a zoo.training_hook.TrainingHook, not
    here (research/).
    """

    def __init__(self, map_size: int, num_templates: int | str = _templates.DEFAULT_NUM_TEMPLATES,
                 tau: float = _templates.DEFAULT_TAU, radius: float | None = None,
                 marginal: str = "uniform", impl: str = "auto"):
        super().__init__()
        if marginal not in MARGINALS:
            raise ValueError(f"marginal must be one of {MARGINALS}, got {marginal!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.map_size = int(map_size)
        self.num_templates = num_templates
        self.tau = float(tau)
        self.radius = (float(radius) if radius is not None
                       else _templates.default_radius_for(map_size))
        self.marginal = marginal
        self.impl = impl
        # Build once now so that bad geometry fails at construction, not in the first step.
        self.templates_for(torch.device("cpu"), torch.float64)

    def templates_for(self, device, dtype) -> torch.Tensor:
        return _templates.get_templates(self.map_size, self.num_templates, self.radius, self.tau,
                                        device=device, dtype=dtype)

    def prepare(self, fmap: torch.Tensor) -> torch.Tensor:
        """The maps the MI is computed on: float32 at least (under AMP they arrive in 16 bits).
        ValueError unless they are (B, C, map_size, map_size) or (N, map_size**2)."""
        n = self.map_size
        if not isinstance(fmap, torch.Tensor):
            raise TypeError(f"ECLoss takes a tensor of feature maps, got {type(fmap).__name__}")
        if not ((fmap.dim() == 4 and tuple(fmap.shape[2:]) == (n, n))
                or (fmap.dim() == 2 and fmap.shape[1] == n * n)):
            raise ValueError(f"ECLoss(map_size={n}) needs maps of shape (B, C, {n}, {n}) or "
                             f"(N, {n * n}), got {tuple(fmap.shape)}")
        if fmap.dtype in (torch.float16, torch.bfloat16):
            fmap = fmap.float()  # under AMP: the softmax over templates needs float32 range
        return fmap

    def mutual_information(self, fmap: torch.Tensor) -> torch.Tensor:
        fmap = self.prepare(fmap)
        t = self.templates_for(fmap.device, fmap.dtype)
        return mutual_information(fmap, t, self.marginal, self.impl)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return -self.mutual_information(fmap)

    def extra_repr(self) -> str:
        return (f"map_size={self.map_size}, num_templates={self.num_templates}, tau={self.tau}, "
                f"radius={self.radius}, marginal={self.marginal!r}, impl={self.impl!r}")


def mutual_information_across_ranks(x: torch.Tensor, templates: torch.Tensor,
                                    marginal: str = "uniform", impl: str = "auto",
                                    group=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 over the maps of every data-parallel rank: (term to differentiate, global MI value).

    DDP averages gradients over the W ranks, so each rank returns a term whose averaged gradient is
    the gradient of the global MI:
    * uniform: the MI is a mean over maps, so the local mean is that term (equal local batches).
    * batch: P(T) is the mean of P(T|x) over the maps of all ranks (all-reduced, detached), and
      the term is W * (1/N_global) sum_local sum_T p (log p - log P(T)). Detaching P(T) loses
      nothing: its gradient contributes -1/N to dMI/dP(T|x) for every template alike, which the
      softmax Jacobian (rows summing to zero) maps to zero.
    With no process group (or world size 1) both reduce to ``mutual_information``.
    """
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        mi = mutual_information(x, templates, marginal, impl)
        return mi, mi.detach()
    world = dist.get_world_size(group)
    if marginal == "uniform":
        mi = mutual_information(x, templates, marginal, impl)
        value = mi.detach().clone()
        dist.all_reduce(value, group=group)
        return mi, value / world
    x, templates = flatten_maps(x, templates)
    log_p = template_log_posterior(x, templates)
    p = log_p.exp()
    stats = torch.cat([p.detach().sum(0), torch.tensor([float(len(p))], dtype=p.dtype,
                                                       device=p.device)])
    dist.all_reduce(stats, group=group)
    n_global = stats[-1]
    log_prior = torch.log(stats[:-1].clamp_min(torch.finfo(p.dtype).tiny)) - torch.log(n_global)
    local = (p * (log_p - log_prior)).sum() / n_global
    value = local.detach().clone()
    dist.all_reduce(value, group=group)
    return world * local, value
