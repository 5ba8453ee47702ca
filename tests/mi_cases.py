"""Templates, random maps and MI value + gradient for test_ops and test_ops_extension."""
import torch

from zoo import templates


def template_rows(n, m, tau=1.0, dtype=torch.float64):
    radius = templates.default_radius_for(n)
    return templates.get_templates(n, m, radius, tau, dtype=dtype).reshape(-1, n * n)


def maps(n_maps, n, seed, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n_maps, n * n, generator=g, dtype=torch.float64) * scale).to(dtype)


def value_and_grad(fn, x, t, marginal):
    x = x.detach().clone().requires_grad_(True)
    mi = fn(x, t, marginal)
    (g,) = torch.autograd.grad(mi, x)
    return mi.detach(), g
