"""The lab's variants of ECLoss's maps and templates (research.ecloss_variants) and how the hook
applies them (research.hooks.ExperimentHook)."""
import numpy as np
import pytest
import torch

from research.ecloss_variants import normalize_maps, peak_positions, variant_templates
from research.hooks import ExperimentHook
from zoo.ecloss import ECLoss, content_free_term, mutual_information
from zoo.metrics.explainability import outer_ring
from zoo.templates import build_templates


def test_map_norm_extension_removes_scale_dependence():
    """Raw MI rises when activations are merely scaled up; with map_norm="max" it does not."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 8, 7, 7, generator=g, dtype=torch.float64)
    raw = ECLoss(7, num_templates=100, tau=1.0, impl="reference")
    hook = ExperimentHook(map_norm="max")
    t = raw.templates_for(torch.device("cpu"), torch.float64)

    def normed(v):
        return mutual_information(hook.ecloss_maps(raw.prepare(v)), hook.templates(raw, t),
                                  impl="reference")
    assert raw.mutual_information(10 * x) > raw.mutual_information(x) + 0.1
    assert normed(10 * x).item() == pytest.approx(normed(x).item(), rel=1e-10)
    prepared = hook.ecloss_maps(raw.prepare(x))
    torch.testing.assert_close(prepared.amax(dim=(-2, -1)), torch.ones(2, 8, dtype=torch.float64))
    zeros = torch.zeros(1, 1, 7, 7)
    assert torch.equal(hook.ecloss_maps(raw.prepare(zeros)), zeros)
    assert ExperimentHook().ecloss_maps(x) is x                         # "none": the paper
    with pytest.raises(ValueError, match="map normalisation"):
        normalize_maps(x, "l1")
    with pytest.raises(ValueError, match="map_norm"):
        ExperimentHook(map_norm="l1")


def test_interior_template_peaks():
    n = 7
    pos = peak_positions(n, "interior")
    assert len(pos) == 25 and not any(p // n in (0, 6) or p % n in (0, 6) for p in pos)
    t = variant_templates(n, "full", 2.0, 1.0, peaks="interior")
    assert len(t) == 25 + 25 * 24 // 2 + 1
    flat = t.reshape(len(t), -1)
    # every non-negative template peaks (value tau) only on interior cells
    ring = outer_ring(n).ravel()
    assert not (flat[:-1][:, ring] == 1.0).any()
    assert (flat[-1] == -1.0).all()
    # the "all" set is the paper's
    assert np.array_equal(variant_templates(n, 400, 2.0, 1.0, peaks="all"),
                          build_templates(n, 400, 2.0, 1.0))
    with pytest.raises(ValueError, match="no interior cells"):
        peak_positions(2, "interior")
    with pytest.raises(ValueError, match="template peaks must be"):
        peak_positions(n, "corners")


def test_the_hook_swaps_the_templates_and_keeps_the_negative_one_last():
    loss = ECLoss(7, num_templates=400, tau=1.0, radius=2.0, impl="reference")
    bank = loss.templates_for(torch.device("cpu"), torch.float32)
    assert ExperimentHook().templates(loss, bank) is bank                 # "all": the paper
    for peaks in ("interior", "permuted"):
        hook = ExperimentHook(template_peaks=peaks)
        t = hook.templates(loss, bank)
        # 7 x 7 maps have 25 interior cells: 25 + 300 + 1 = 326 interior templates in all
        assert t.dtype == bank.dtype and t.shape[1:] == bank.shape[1:]
        assert len(t) == (326 if peaks == "interior" else 400) and not torch.equal(t[:326],
                                                                                   bank[:326])
        np.testing.assert_array_equal(
            t.numpy(), variant_templates(7, 400, 2.0, 1.0, peaks).astype(np.float32))
        assert hook.templates(loss, bank) is t                            # built once
        x = torch.rand(2, 3, 7, 7)
        assert torch.isfinite(content_free_term(x, t))                   # negative one last
    with pytest.raises(ValueError, match="template_peaks must be"):
        ExperimentHook(template_peaks="corners")
