"""Verification metrics (LFW protocol) against brute-force definitions."""
import numpy as np
import pytest
import torch

from zoo.metrics import verification


def test_separable_scores_give_accuracy_one():
    rng = np.random.default_rng(0)
    issame = np.repeat([True, False], 300)
    scores = np.where(issame, rng.uniform(0.6, 1.0, 600), rng.uniform(-0.2, 0.4, 600))
    perm = rng.permutation(600)
    rep = verification.verification_report(scores[perm], issame[perm])
    assert rep["accuracy"] == 1.0 and rep["std"] == 0.0 and rep["auc"] == 1.0
    assert all(0.4 <= t <= 0.6 for t in rep["thresholds"])


def test_random_scores_give_chance():
    rng = np.random.default_rng(1)
    issame = rng.random(6000) < 0.5
    rep = verification.verification_report(rng.normal(size=6000), issame)
    assert abs(rep["accuracy"] - 0.5) < 0.03 and abs(rep["auc"] - 0.5) < 0.03


def test_threshold_is_chosen_without_the_test_fold(monkeypatch):
    rng = np.random.default_rng(2)
    scores, issame = rng.normal(size=100), rng.random(100) < 0.5
    folds = np.arange(100) % 10
    seen = []
    real = verification.best_threshold

    def spy(s, y):
        seen.append(np.sort(s))
        return real(s, y)

    monkeypatch.setattr(verification, "best_threshold", spy)
    verification.kfold_accuracy(scores, issame, folds)
    assert len(seen) == 10
    for k, s in enumerate(seen):
        np.testing.assert_array_equal(s, np.sort(scores[folds != k]))


def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(3)
    scores, issame = np.round(rng.normal(size=200), 1), rng.random(200) < 0.5  # with ties
    th = verification.best_threshold(scores, issame)
    brute = max(np.mean((scores >= t) == issame) for t in np.concatenate([scores, [np.inf]]))
    assert np.mean((scores >= th) == issame) == pytest.approx(brute)


def test_auc_and_tar_match_brute_force():
    rng = np.random.default_rng(4)
    issame = rng.random(400) < 0.4
    scores = np.round(rng.normal(size=400) + issame, 1)
    pos, neg = scores[issame], scores[~issame]
    brute = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert verification.roc_auc(scores, issame) == pytest.approx(brute, abs=1e-12)
    tar = verification.tar_at_far(scores, issame, 1e-2)
    thr = sorted(neg)[::-1][int(0.01 * len(neg))]
    assert np.mean(neg > thr) <= 0.01
    assert tar == pytest.approx(np.mean(pos > thr))
    assert verification.tar_at_far(scores[:50], issame[:50], 1e-3) is None  # too few negatives


def test_embed_normalises_and_flip_averages():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(7, 3, 4, 4)
    e = verification.embed(model, x, batch_size=3)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(7))
    ef = verification.embed(model, x, flip=True)
    want = torch.nn.functional.normalize(model(x) + model(torch.flip(x, dims=[3])), dim=1)
    torch.testing.assert_close(ef, want.detach())


def test_bad_inputs():
    with pytest.raises(ValueError):
        verification.kfold_accuracy(np.zeros(3), np.zeros(4, bool))
    with pytest.raises(ValueError, match="positive and negative"):
        verification.roc_auc(np.zeros(3), np.ones(3, bool))
