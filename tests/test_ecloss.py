"""Reference ECLoss (paper Eq. 5-6) against a float64 brute force written independently here."""
import math

import numpy as np
import pytest
import torch

from zoo import templates
from zoo.ecloss import (
    BetaPolicy,
    ECLoss,
    mutual_information,
    mutual_information_reference,
    template_log_posterior,
    total_loss,
)


def mi_brute_force(maps, temps, marginal):
    """Eq. 5 as written: sum_x sum_T P(x) P(T|x) log(P(T|x)/P(T)), loops and numpy float64."""
    maps = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    temps = np.asarray(temps, dtype=np.float64).reshape(len(temps), -1)
    n_maps, m = len(maps), len(temps)
    post = np.empty((n_maps, m))
    for i in range(n_maps):
        z = np.array([float(np.dot(maps[i], temps[j])) for j in range(m)])  # tr(x . T)
        e = np.exp(z - z.max())
        post[i] = e / e.sum()                                               # Eq. 6
    p_x = 1.0 / n_maps
    prior = np.full(m, 1.0 / m) if marginal == "uniform" else post.sum(0) * p_x
    mi = 0.0
    for i in range(n_maps):
        for j in range(m):
            if post[i, j] > 0:
                mi += p_x * post[i, j] * math.log(post[i, j] / prior[j])
    return mi


@pytest.mark.parametrize("marginal", ["uniform", "batch"])
@pytest.mark.parametrize("n,m,n_maps,tau", [(7, 1, 3, 1.0), (7, 2, 1, 1.0), (7, 50, 10, 0.5),
                                            (14, 400, 6, 1e-3), (14, 400, 5, 2.0),
                                            (5, 301, 20, 1.0)])
def test_matches_brute_force(marginal, n, m, n_maps, tau):
    g = torch.Generator().manual_seed(n * 1000 + m + n_maps)
    x = torch.rand(n_maps, n, n, generator=g, dtype=torch.float64) * 3
    temps = templates.get_templates(n, m, templates.default_radius_for(n), tau, dtype=torch.float64)
    got = mutual_information_reference(x.reshape(n_maps, -1), temps, marginal).item()
    want = mi_brute_force(x.numpy(), temps.numpy(), marginal)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-14)
    if m == 1:
        assert got == pytest.approx(0.0, abs=1e-15)  # one template: P(T|x) = 1, no information


def test_batch_chw_equals_flat():
    x = torch.rand(2, 3, 7, 7, dtype=torch.float64)
    temps = templates.get_templates(7, 30, 2.0, 1.0, dtype=torch.float64)
    a = mutual_information_reference(x, temps, "batch")
    b = mutual_information_reference(x.reshape(6, 49), temps.reshape(30, 49), "batch")
    assert a.item() == b.item()


@pytest.mark.parametrize("marginal", ["uniform", "batch"])
def test_gradcheck(marginal):
    x = (torch.rand(4, 25, dtype=torch.float64) * 2).requires_grad_()
    temps = templates.get_templates(5, 40, 1.5, 1.0, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: mutual_information_reference(v, temps, marginal),
                                    (x,))


@pytest.mark.parametrize("tau", [1e-3, 1.0, 10.0])
@pytest.mark.parametrize("scale", [1.0, 100.0])
@pytest.mark.parametrize("marginal", ["uniform", "batch"])
def test_no_overflow(tau, scale, marginal):
    x = (torch.rand(8, 16, 14, 14) * scale).requires_grad_()
    temps = templates.get_templates(14, 400, 4.0, tau)
    mi = mutual_information_reference(x, temps, marginal)
    mi.backward()
    assert torch.isfinite(mi) and torch.isfinite(x.grad).all()
    assert -1e-4 <= mi.item() <= math.log(400) + 1e-4


def test_peaked_map_has_more_mi_than_noise():
    n = 14
    temps = templates.get_templates(n, 400, 4.0, 1.0, dtype=torch.float64)
    uu, vv = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    blobs = []
    for (i, j) in [(4, 4), (4, 9), (9, 7), (7, 2)]:
        blobs.append(torch.exp(-((uu - i) ** 2 + (vv - j) ** 2) / 4.0).double())
    blobs = torch.stack(blobs)
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(4, n, n, generator=g, dtype=torch.float64)
    # same energy
    noise *= blobs.norm(dim=(1, 2), keepdim=True) / noise.norm(dim=(1, 2), keepdim=True)
    for marginal in ("uniform", "batch"):
        mi_blob = mutual_information_reference(blobs.reshape(4, -1), temps, marginal)
        mi_noise = mutual_information_reference(noise.reshape(4, -1), temps, marginal)
        print(marginal, float(mi_blob), float(mi_noise))
        assert mi_blob > mi_noise + 0.2, (marginal, mi_blob, mi_noise)
    # and the posterior of a blob peaks on a template whose peak is at the blob
    log_p = template_log_posterior(blobs[:1].reshape(1, -1), temps)
    best = temps[log_p.argmax()]
    assert best[4, 4] == best.max()


def test_input_errors():
    temps = templates.get_templates(7, 10, 2.0, 1.0)
    with pytest.raises(ValueError, match="positions"):
        mutual_information_reference(torch.rand(2, 3, 6, 6), temps)
    with pytest.raises(ValueError, match="empty batch"):
        mutual_information_reference(torch.rand(0, 49), temps)
    with pytest.raises(TypeError, match="dtype mismatch"):
        mutual_information_reference(torch.rand(2, 49, dtype=torch.float64), temps)
    with pytest.raises(ValueError, match="marginal"):
        mutual_information_reference(torch.rand(2, 49), temps, "prior")


def test_module_and_total_loss():
    loss_fn = ECLoss(7, num_templates=30, tau=1.0, marginal="batch", impl="reference")
    assert loss_fn.radius == pytest.approx(2.0)
    x = torch.rand(2, 4, 7, 7, dtype=torch.float64)
    temps = templates.get_templates(7, 30, 2.0, 1.0, dtype=torch.float64)
    want = -mi_brute_force(x.reshape(8, -1).numpy(), temps.numpy(), "batch")
    assert loss_fn(x).item() == pytest.approx(want, rel=1e-10)
    half = loss_fn(x.half())  # AMP: computed in float32, finite
    assert half.dtype == torch.float32 and torch.isfinite(half)
    ce, mi = torch.tensor(2.0), torch.tensor(0.5)
    assert total_loss(ce, mi, alpha=1.0, beta=0.1).item() == pytest.approx(2.0 - 0.05)
    # the dispatcher with impl="reference" is the reference
    assert mutual_information(x, temps, "uniform", impl="reference").item() == \
        mutual_information_reference(x, temps, "uniform").item()


def test_beta_policy_fixed_and_auto():
    fixed = BetaPolicy(beta=1e-5, mode="fixed")
    for _ in range(10):
        fixed.update(ce=3.0, mi=1.0)
    assert fixed.beta == 1e-5
    auto = BetaPolicy(beta=1e-5, mode="auto", ratio=0.1, rate=0.1, beta_max=10.0)
    for _ in range(200):
        auto.update(ce=3.0, mi=1.0)
    # beta rose geometrically and now hovers where beta*MI ~= ratio*CE = 0.3
    assert 0.3 / 1.1 <= auto.beta <= 0.3 * 1.1
    capped = BetaPolicy(beta=1e-5, mode="auto", rate=0.5, beta_max=1e-3)
    for _ in range(100):
        capped.update(ce=3.0, mi=1e-6)
    assert capped.beta == 1e-3
    floor = BetaPolicy(beta=1.0, mode="auto", rate=0.5, beta_min=1e-5)
    for _ in range(100):
        floor.update(ce=0.0, mi=1.0)
    assert floor.beta == 1e-5
    restored = BetaPolicy(mode="auto")
    restored.load_state_dict(auto.state_dict())
    assert restored.update(3.0, 1.0) == auto.update(3.0, 1.0)
    with pytest.raises(ValueError):
        BetaPolicy(mode="sometimes")


def test_batch_marginal_gradient_with_detached_prior_is_exact():
    """The identity mutual_information_across_ranks relies on: P(T) may be detached."""
    from zoo.ecloss import flatten_maps
    temps = templates.get_templates(5, 30, 1.5, 1.0, dtype=torch.float64)
    x = (torch.rand(6, 25, dtype=torch.float64) * 3).requires_grad_()
    mutual_information_reference(x, temps, "batch").backward()
    full = x.grad.clone()
    x.grad = None
    xf, tf = flatten_maps(x, temps)
    log_p = template_log_posterior(xf, tf)
    log_q = torch.log(log_p.exp().detach().mean(0))
    (log_p.exp() * (log_p - log_q)).sum(1).mean().backward()
    torch.testing.assert_close(x.grad, full, rtol=1e-10, atol=1e-14)
