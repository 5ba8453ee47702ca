"""The hide-and-compare game of export.part_game: Shapley values against brute force, the
pairwise estimator, the fill, and a model that ignores a region."""
import itertools
import math

import numpy as np
import pytest

from export.part_game import (
    PLAYERS,
    coalitions,
    hide,
    play,
    player_masks,
    shapley_exact,
    shapley_kernel,
    shapley_pairwise,
)


def _brute_force_shapley(n, v):
    """Shapley values as the mean marginal contribution over all n! orders (float64)."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        s = frozenset()
        for i in order:
            phi[i] += v(s | {i}) - v(s)
            s = s | {i}
    return phi / math.factorial(n)


def _game_values(members, v):
    return np.array([v(frozenset(np.flatnonzero(m))) for m in members])


@pytest.mark.parametrize("n", [1, 3, 5])
def test_exact_shapley_matches_brute_force(n):
    rng = np.random.default_rng(n)
    table = {frozenset(c): rng.normal() for r in range(n + 1)
             for c in itertools.combinations(range(n), r)}
    v = table.__getitem__
    members = coalitions(n, "exact")
    phi = shapley_exact(members, _game_values(members, v))
    np.testing.assert_allclose(phi, _brute_force_shapley(n, v), atol=1e-12)
    # efficiency: the values sum to v(all) - v(empty)
    assert phi.sum() == pytest.approx(v(frozenset(range(n))) - v(frozenset()), abs=1e-12)


def test_exact_shapley_is_order_free():
    n = 4
    rng = np.random.default_rng(0)
    members = coalitions(n, "exact")
    values = rng.normal(size=len(members))
    perm = rng.permutation(len(members))
    np.testing.assert_allclose(shapley_exact(members[perm], values[perm]),
                               shapley_exact(members, values), atol=1e-12)


def test_pairwise_is_exact_for_games_of_order_two():
    n = 8
    rng = np.random.default_rng(1)
    first = rng.normal(size=n)
    inter = np.triu(rng.normal(size=(n, n)), 1)

    def v(s):
        idx = sorted(s)
        return 0.3 + first[idx].sum() + sum(inter[i, j] for i in idx for j in idx if i < j)

    pair = coalitions(n, "pairwise")
    exact = coalitions(n, "exact")
    np.testing.assert_allclose(shapley_pairwise(_game_values(pair, v), n),
                               shapley_exact(exact, _game_values(exact, v)), atol=1e-12)


def test_pairwise_is_efficient_on_any_game():
    n = 8
    rng = np.random.default_rng(2)
    values = rng.normal(size=2 * n + 2)
    phi = shapley_pairwise(values, n)
    assert phi.sum() == pytest.approx(values[1] - values[0], abs=1e-12)
    with pytest.raises(ValueError, match="expected 18 values"):
        shapley_pairwise(values[:-1], n)


def test_coalition_rows_and_bad_estimator():
    for est in ("exact", "pairwise"):
        m = coalitions(8, est)
        assert not m[0].any() and m[1].all()
    assert len(coalitions(8, "exact")) == 256 and len({tuple(r) for r in coalitions(8, "exact")}) \
        == 256
    with pytest.raises(ValueError, match="unknown estimator"):
        coalitions(8, "sampled")


def _masks(size=24):
    """7 disjoint part masks: horizontal bands of 3 rows from row 2; the rest is 'other'."""
    m = np.zeros((7, size, size), bool)
    for k in range(7):
        m[k, 2 + 3 * k:5 + 3 * k] = True
    return m


def test_player_masks_cover_every_pixel_once():
    p = player_masks(_masks())
    assert p.shape == (8, 24, 24) and (p.sum(0) == 1).all()
    bad = _masks()
    bad[1, 2] = True  # overlaps part 0
    with pytest.raises(ValueError, match="overlap"):
        player_masks(bad)


@pytest.mark.parametrize("fill", ["blur", "mean"])
def test_hide_never_reads_hidden_pixels(fill):
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 255, (24, 24, 3))
    vis = np.zeros((2, 24, 24), bool)
    vis[0, :12] = True
    vis[1] = True
    out = hide(img, vis, (128, 128, 128), fill=fill)
    np.testing.assert_array_equal(out[1], img)                  # all visible: unchanged
    np.testing.assert_array_equal(out[0, :12], img[:12])         # visible pixels kept
    other = img.copy()
    other[12:] = rng.uniform(0, 255, (12, 24, 3))                # change only hidden pixels
    np.testing.assert_allclose(hide(other, vis[:1], (128, 128, 128), fill=fill), out[:1],
                               atol=1e-9)
    nothing = hide(img, np.zeros((1, 24, 24), bool), (10, 20, 30), fill=fill)
    np.testing.assert_allclose(nothing[0], np.broadcast_to([10, 20, 30], (24, 24, 3)), atol=1e-6)


def _region_model(region):
    """A toy 'model' that sees only the pixels in ``region`` (H, W) bool: a fixed random
    projection of those pixels (plus a constant so flat images do not embed to zero)."""
    rng = np.random.default_rng(4)
    proj = rng.normal(size=(int(region.sum()) * 3, 16))

    def embed(batch):
        x = batch[:, region].reshape(len(batch), -1) / 255.0
        return np.tanh(x @ proj / 10.0) + 1.0
    return embed


def test_a_part_the_model_ignores_gets_no_share():
    size = 24
    masks = _masks(size)
    rng = np.random.default_rng(5)
    a = rng.uniform(0, 255, (size, size, 3))
    b = a.copy()
    mouth = PLAYERS.index("mouth")
    b[masks[mouth]] = 255 - b[masks[mouth]]        # the faces differ only on the mouth
    b[masks[0]] = rng.uniform(0, 255, (int(masks[0].sum()), 3))  # ... and on part 0 (hair)
    sees_all_but_mouth = ~masks[mouth]
    for est in ("exact", "pairwise"):
        g = play(_region_model(sees_all_but_mouth), a, b, masks, masks, (128, 128, 128), est,
                 fill="mean")
        assert abs(g.difference[mouth]) < 1e-12           # exactly nothing for the mouth
        assert g.difference[0] > 0.01                       # the hair made the difference
        assert g.difference.sum() == pytest.approx(1 - g.similarity, abs=1e-9)
    # the blur fill lets the mouth's pixels into its neighbours' fill (here bands of 3 pixels,
    # all within the blur's reach): a share, but below the part that differs and is seen
    g = play(_region_model(sees_all_but_mouth), a, b, masks, masks, (128, 128, 128), "exact",
             fill="blur")
    assert 0 < abs(g.difference[mouth]) < 0.5 * g.difference[0]


def test_the_only_changed_part_takes_the_whole_difference():
    size = 24
    masks = _masks(size)
    rng = np.random.default_rng(6)
    a = rng.uniform(0, 255, (size, size, 3))
    b = a.copy()
    eyes = PLAYERS.index("eyes")
    b[masks[eyes]] = rng.uniform(0, 255, (int(masks[eyes].sum()), 3))
    g = play(_region_model(np.ones((size, size), bool)), a, b, masks, masks, (128, 128, 128),
             "exact", fill="mean")
    # with the eyes hidden both faces are identical, so every coalition without them has
    # v = 1; the others get shares only through their interactions with the eyes
    assert g.hidden_similarity(eyes) == pytest.approx(1.0, abs=1e-9)
    assert np.argmax(g.difference) == eyes
    assert g.difference[eyes] > 0.5 * (1 - g.similarity)
    assert g.difference.sum() == pytest.approx(1 - g.similarity, abs=1e-9)


def test_kernel_on_every_coalition_is_the_shapley_value():
    """KernelSHAP's weighted least squares over all coalitions gives the exact values (its
    defining property), and on the 'kernel' subset it is efficient and exact for games
    without interactions of order 3 or more."""
    n = 6
    rng = np.random.default_rng(7)
    members = coalitions(n, "exact")
    values = rng.normal(size=len(members))
    np.testing.assert_allclose(shapley_kernel(members, values),
                               shapley_exact(members, values), atol=1e-10)
    first = rng.normal(size=n)
    inter = np.triu(rng.normal(size=(n, n)), 1)

    def v(s):
        idx = sorted(s)
        return first[idx].sum() + sum(inter[i, j] for i in idx for j in idx if i < j)

    sub = coalitions(n, "kernel")
    assert len(sub) == 2 + 2 * (n + n * (n - 1) // 2)
    np.testing.assert_allclose(shapley_kernel(sub, _game_values(sub, v)),
                               shapley_exact(members, _game_values(members, v)), atol=1e-10)


@pytest.mark.parametrize("fill", ["mean", "blur"])
def test_filling_in_the_networks_input_space_gives_the_same_game(fill):
    """play(preprocess=...) (the runtime's path: the mean fill applied after the per-pixel
    preprocessing) gives the values of filling the pixels first and preprocessing each image."""
    size = 24
    masks = _masks(size)
    rng = np.random.default_rng(7)
    a, b = (rng.integers(0, 256, (size, size, 3)).astype(np.float64) for _ in range(2))
    mean, std = np.array([0.3, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])

    def preprocess(images):            # per pixel: x / 255, BGR, (x - mean) / std, NCHW
        x = np.asarray(images, np.float64).transpose(0, 3, 1, 2)[:, ::-1] / 255.0
        return (x - mean[::-1, None, None]) / std[::-1, None, None]

    w = np.random.default_rng(8).normal(size=(3 * size * size, 6))

    def embed_inputs(x):               # a non-linear network on the inputs
        return np.tanh(x.reshape(len(x), -1) @ w / 30.0) + 0.1

    for est in ("pairwise", "kernel"):
        fast = play(embed_inputs, a, b, masks, masks, (90, 120, 150), est, fill=fill,
                    preprocess=preprocess)
        slow = play(lambda im: embed_inputs(preprocess(im)), a, b, masks, masks,
                    (90, 120, 150), est, fill=fill)
        np.testing.assert_allclose(fast.values, slow.values, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast.shapley, slow.shapley, rtol=0, atol=1e-12)
        assert 1 - fast.similarity > 0.01           # a real difference, not a trivial game
