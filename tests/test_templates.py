"""Templates of paper Eq. 2-4 against an independent element-by-element computation."""
import itertools
import math

import numpy as np
import pytest
import torch

from zoo import templates


def eq2_by_hand(n, i, j, r, tau):
    out = np.empty((n, n))
    for u in range(n):
        for v in range(n):
            out[u, v] = tau * max(1.0 - math.hypot(u - i, v - j) / r, -1.0)
    return out


@pytest.mark.parametrize("n", [1, 2, 7, 14, 28])
def test_full_count(n):
    k = n * n
    assert templates.full_template_count(n) == k + math.comb(k, 2) + 1
    assert templates.full_template_count(14) == 19307


def test_one_peak_known_points():
    t = templates.one_peak_template(14, 3, 5, r=4, tau=1e-3)
    assert t[3, 5] == pytest.approx(1e-3)              # the peak: tau
    assert t[3, 9] == pytest.approx(0.0, abs=1e-18)    # distance r: zero
    assert t[5, 5] == pytest.approx(1e-3 * 0.5)        # distance r/2
    assert t[13, 13] == pytest.approx(-1e-3)           # far away: clamped at -tau
    np.testing.assert_allclose(t, eq2_by_hand(14, 3, 5, 4, 1e-3), rtol=0, atol=1e-18)


@pytest.mark.parametrize("n,r,tau", [(7, 2.0, 1.0), (14, 4.0, 1e-3), (5, 1.5, 10.0)])
def test_full_set_matches_definition(n, r, tau):
    full = templates.build_templates(n, "full", r, tau)
    k = n * n
    assert full.shape == (templates.full_template_count(n), n, n)
    coords = [(p // n, p % n) for p in range(k)]
    for p, (i, j) in enumerate(coords):
        np.testing.assert_allclose(full[p], eq2_by_hand(n, i, j, r, tau), atol=1e-15)
    # Every two-peak template equals the max of its two one-peak templates, in lexicographic order.
    for idx, (a, b) in enumerate(itertools.combinations(range(k), 2)):
        np.testing.assert_array_equal(full[k + idx], np.maximum(full[a], full[b]))
        if idx > 300:
            break
    np.testing.assert_array_equal(full[-1], np.full((n, n), -tau))


def test_two_peak_all_pairs_n7():
    n, k = 7, 49
    full = templates.build_templates(n, "full", 2.0, 1.0)
    pairs = list(itertools.combinations(range(k), 2))
    for idx, (a, b) in enumerate(pairs):
        expect = np.maximum(eq2_by_hand(n, a // n, a % n, 2.0, 1.0),
                            eq2_by_hand(n, b // n, b % n, 2.0, 1.0))
        np.testing.assert_allclose(full[k + idx], expect, atol=1e-15)
    assert len(np.unique(full.reshape(len(full), -1), axis=0)) == len(full)  # unique set


def test_two_peak_rejects_same_peak():
    with pytest.raises(ValueError, match="distinct"):
        templates.two_peak_template(14, (2, 2), (2, 2))


def test_evenly_spaced_subset():
    idx = templates.evenly_spaced_indices(19307, 400)
    assert len(idx) == 400 and idx[0] == 0 and idx[-1] == 19306
    assert np.all(np.diff(idx) >= 48) and np.all(np.diff(idx) <= 49)
    sub = templates.build_templates(14, 400)
    full = templates.build_templates(14, "full")
    np.testing.assert_array_equal(sub, full[idx])
    np.testing.assert_array_equal(templates.build_templates(14, 400), sub)  # deterministic
    assert templates.evenly_spaced_indices(10, 1).tolist() == [9]     # M=1: the negative template
    assert templates.evenly_spaced_indices(10, 50).tolist() == list(range(10))


def test_subset_at_n28_without_full_set():
    sub = templates.build_templates(28, 400, r=8.0, tau=1.0)
    idx = templates.evenly_spaced_indices(templates.full_template_count(28), 400)
    kind, a, b = templates.template_kinds(28, idx)
    for row, kd, pa, pb in zip(sub[::37], kind[::37], a[::37], b[::37]):
        if kd == 2:
            expect = np.maximum(eq2_by_hand(28, pa // 28, pa % 28, 8.0, 1.0),
                                eq2_by_hand(28, pb // 28, pb % 28, 8.0, 1.0))
            np.testing.assert_allclose(row, expect, atol=1e-15)
            assert pa < pb


def test_get_templates_cache_device_dtype():
    t1 = templates.get_templates(7, 20, 2.0, 0.5, dtype=torch.float32)
    t2 = templates.get_templates(7, 20, 2.0, 0.5, dtype=torch.float32)
    assert t1 is t2 and t1.dtype == torch.float32 and t1.shape == (20, 7, 7)
    t3 = templates.get_templates(7, 20, 2.0, 0.5, dtype=torch.float64)
    assert t3.dtype == torch.float64
    torch.testing.assert_close(t1.double(), t3, rtol=0, atol=1e-7)


@pytest.mark.parametrize("bad", [dict(n=0), dict(r=0.0), dict(tau=-1.0)])
def test_bad_geometry(bad):
    kw = dict(n=7, num_templates=10, r=2.0, tau=1.0)
    kw.update(bad)
    with pytest.raises(ValueError):
        templates.build_templates(**kw)


def test_templates_over_given_peak_positions():
    n = 5
    every = np.arange(n * n)
    np.testing.assert_array_equal(templates.build_templates(n, "full", 1.5, 1.0, positions=every),
                                  templates.build_templates(n, "full", 1.5, 1.0))
    corners = [0, n - 1, n * n - 1]
    t = templates.build_templates(n, "full", 1.5, 1.0, positions=corners)
    assert len(t) == 3 + 3 + 1                          # 3 one-peak, C(3, 2) two-peak, negative
    np.testing.assert_array_equal(t[1], templates.one_peak_template(n, 0, n - 1, 1.5, 1.0))
    np.testing.assert_array_equal(
        t[3], templates.two_peak_template(n, (0, 0), (0, n - 1), 1.5, 1.0))
    assert (t[-1] == -1.0).all()
    for bad in ([], [n * n], [-1]):
        with pytest.raises(ValueError, match="peak positions"):
            templates.build_templates(n, "full", positions=bad)


def test_the_paper_constants_have_one_definition():
    from zoo.config import PAPER_MODELS, PRESETS
    from zoo.ecloss import BetaPolicy
    assert (templates.DEFAULT_TAU, templates.DEFAULT_BETA) == (1e-3, 1e-5)   # the paper's
    ecl = PAPER_MODELS["vgg16-ecloss"]["ecloss"]
    assert (ecl["tau"], ecl["beta"], ecl["radius"], ecl["num_templates"]) == (
        templates.DEFAULT_TAU, templates.DEFAULT_BETA, templates.DEFAULT_RADIUS,
        templates.DEFAULT_NUM_TEMPLATES)
    assert (PRESETS["paper"]["tau"], PRESETS["paper"]["beta"]) == (templates.DEFAULT_TAU,
                                                                   templates.DEFAULT_BETA)
    assert BetaPolicy().beta == BetaPolicy().beta_min == templates.DEFAULT_BETA
