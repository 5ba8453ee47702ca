"""Reference ECLoss forward+backward against its floor of two GEMMs (x T^T and G T), same run.

Run with `pytest --benchmark`. Ratios, not absolute times, are what docs/performance.md reports.
"""
import pytest
import torch

from zoo.ecloss import mutual_information_reference
from zoo.templates import get_templates

N_MAPS, N, M = 16 * 128, 14, 400


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N_MAPS, N * N, generator=g)
    return x, get_templates(N, M, 4.0, 1.0).reshape(M, -1).contiguous()


@pytest.mark.parametrize("marginal", ["uniform", "batch"])
def test_reference_forward_backward(benchmark, inputs, marginal):
    x, temps = inputs
    x = x.clone().requires_grad_()

    def step():
        x.grad = None
        mutual_information_reference(x, temps, marginal).backward()

    benchmark.group = f"reference ECLoss fwd+bwd N={N_MAPS} n={N} M={M}"
    benchmark(step)
    assert torch.isfinite(x.grad).all()


def test_two_gemm_floor(benchmark, inputs):
    x, temps = inputs
    g = torch.rand(N_MAPS, M)

    def floor():
        return x @ temps.t(), g @ temps

    benchmark.group = f"reference ECLoss fwd+bwd N={N_MAPS} n={N} M={M}"
    benchmark(floor)
