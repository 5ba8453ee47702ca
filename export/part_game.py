"""Which face part made the difference: Shapley values of the parts in a hide-and-compare game.

The players are the 7 face parts of export.part_masks (hair, forehead, cheek, eyes, nose, mouth,
jaw) and ``other`` (every pixel of no part: background, neck, clothes), so that every pixel
belongs to exactly one player. A coalition S is a set of players that stay visible; the others
are hidden on BOTH faces by the same rule (``hide``; default ``fill="mean"``: hidden pixels take
the model's mean colour, so a part never changes another part's fill and a part the model
ignores gets exactly no share; ``fill="blur"`` fills them from the visible pixels, blurred,
which leaks a little across part edges). The value of S is the cosine similarity of the two
faces' embeddings with only S visible:

    v(S) = cos(f(a_S), f(b_S)),   v(all) = the pair's similarity,   v(empty) = 1

(with nothing visible both inputs are the same flat image). A part's ``difference`` is its
Shapley value in the game d(S) = 1 - v(S), so the 8 shares sum to 1 - similarity exactly. This
is the intervention view of ``verify(explain=True)``: it needs only the embedding model, so it
works for a model of any loss. The channel split of export.channel_evidence is the second view.

Estimators (``ESTIMATORS``; all efficient: the shares always sum to 1 - similarity):
  kernel    KernelSHAP's constrained weighted least squares on the 72 coalitions of size 1, 2,
            6 and 7 plus the empty and full ones (146 embeddings per pair). Default.
  pairwise  the 18 coalitions of size 0, 1, 7 and 8 (34 embeddings):
            phi_i = ((v({i}) - v(empty)) + (v(all) - v(all minus i))) / 2, the gap to
            v(all) - v(empty) shared in proportion to |phi_i| (a null player keeps 0).
  exact     all 2^8 = 256 coalitions (510 embeddings).
Both estimates are exact for games without interactions of order 3 or more; real pairs have
them. Against the exact values on 108 validation pairs of the `make demo` model
(research/shapley_estimators.py, docs/results/shapley_estimators_val.json): kernel named the
exact first part on 82 of 108 pairs, pairwise on 46; median largest error 0.014 and 0.027.
Must not import torch.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .part_masks import PART_NAMES

__all__ = ["PLAYERS", "OTHER", "ESTIMATORS", "FILL_SIGMA", "player_masks", "coalitions",
           "FILLS", "hide", "shapley_exact", "shapley_kernel", "shapley_pairwise", "GameResult",
           "play"]

Preprocess = Callable[[np.ndarray], np.ndarray]   # (N, S, S, 3) in [0, 255] -> network inputs

OTHER = "other"
PLAYERS: Tuple[str, ...] = tuple(PART_NAMES) + (OTHER,)
ESTIMATORS = ("kernel", "pairwise", "exact")
FILLS = ("blur", "mean")  # how hidden pixels are filled (hide)
FILL_SIGMA = 0.06     # x image side: the blur that fills hidden pixels from the visible ones
FILL_FLOOR = 1e-3     # weight of the mean colour in the fill: where nothing visible is near


def player_masks(part_masks: np.ndarray) -> np.ndarray:
    """(8, H, W) bool: the 7 disjoint part masks and ``other`` = every pixel of no part."""
    m = np.asarray(part_masks, dtype=bool)
    if m.ndim != 3 or m.shape[0] != len(PART_NAMES):
        raise ValueError(f"expected ({len(PART_NAMES)}, H, W) part masks, got {m.shape}")
    if (m.sum(0) > 1).any():
        raise ValueError("part masks overlap: every pixel must belong to one part at most")
    return np.concatenate([m, ~m.any(0, keepdims=True)])


def coalitions(n: int, estimator: str = "kernel") -> np.ndarray:
    """(K, n) bool: the coalitions an estimator evaluates (row 0 the empty one, row 1 the grand
    coalition; exact: all 2^n, row k = the bits of k except that rows 1 and 2^n - 1 swap)."""
    if estimator == "exact":
        ids = np.arange(2 ** n)
        ids[[1, -1]] = ids[[-1, 1]]
        return ((ids[:, None] >> np.arange(n)) & 1).astype(bool)
    if estimator == "pairwise":
        eye = np.eye(n, dtype=bool)
        return np.concatenate([np.zeros((1, n), bool), np.ones((1, n), bool), eye, ~eye])
    if estimator == "kernel":
        pairs = [np.isin(np.arange(n), c) for c in itertools.combinations(range(n), 2)]
        small = np.concatenate([np.eye(n, dtype=bool), np.array(pairs, bool)])
        return np.concatenate([np.zeros((1, n), bool), np.ones((1, n), bool), small, ~small])
    raise ValueError(f"unknown estimator {estimator!r}; use one of {ESTIMATORS}")


def _gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix whose product blurs along one axis with a Gaussian (zero outside)."""
    x = np.arange(size, dtype=np.float64)
    g = np.exp(-0.5 * ((x[:, None] - x[None, :]) / max(sigma, 1e-6)) ** 2)
    return g


def hide(image: np.ndarray, visible: np.ndarray, fill_colour: Sequence[float],
         sigma: float = FILL_SIGMA, fill: str = "mean") -> np.ndarray:
    """Images with the pixels outside ``visible`` filled: (K, H, W, 3) float64 from an (H, W, 3)
    image in [0, 255] and (K, H, W) bool visibility masks.

    A hidden pixel takes the Gaussian-weighted mean (sigma = ``sigma`` x the image side) of the
    visible pixels, pulled towards ``fill_colour`` where few are near (weight FILL_FLOOR): a
    normalised convolution, so what is hidden leaks nothing into its own fill. fill="mean":
    every hidden pixel takes ``fill_colour`` (then a part never changes another part's fill, so
    a part the model ignores gets exactly no share; blur leaks a little across a part's edge)."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; use one of {FILLS}")
    img = np.asarray(image, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool)
    if img.ndim != 3 or img.shape[2] != 3 or vis.ndim != 3 or vis.shape[1:] != img.shape[:2]:
        raise ValueError(f"expected an (H, W, 3) image and (K, H, W) masks, got {img.shape} and "
                         f"{vis.shape}")
    colour = np.asarray(fill_colour, dtype=np.float64).reshape(1, 1, 1, 3)
    if fill == "mean":
        return np.where(vis[..., None], img[None], colour)
    h, w = img.shape[:2]
    gy = _gaussian_matrix(h, sigma * max(h, w))
    gx = _gaussian_matrix(w, sigma * max(h, w))
    weight = vis.astype(np.float64)                                        # (K, H, W)
    den = np.einsum("hi,kij,wj->khw", gy, weight, gx, optimize=True)
    num = np.einsum("hi,kijc,wj->khwc", gy, weight[..., None] * img, gx, optimize=True)
    floor = FILL_FLOOR * float(gy.sum(1).max() * gx.sum(1).max())
    fill = (num + floor * colour) / (den[..., None] + floor)
    return np.where(vis[..., None], img[None], fill)


def shapley_exact(members: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact Shapley values (n,) of the game given on every coalition: members (2^n, n) bool in
    any order, values (2^n,) v(S)."""
    members = np.asarray(members, dtype=bool)
    n = members.shape[1]
    if members.shape[0] != 2 ** n:
        raise ValueError(f"exact Shapley values need all {2 ** n} coalitions, got "
                         f"{members.shape[0]}")
    index = members.astype(np.int64) @ (1 << np.arange(n))
    v = np.empty(2 ** n)
    v[index] = np.asarray(values, dtype=np.float64)
    ids = np.arange(2 ** n)
    bits = (ids[:, None] >> np.arange(n)) & 1
    size = bits.sum(1)
    weight = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
                       if s < n else 0.0 for s in size])
    phi = np.empty(n)
    for i in range(n):
        without = ids[bits[:, i] == 0]
        phi[i] = np.sum(weight[without] * (v[without | (1 << i)] - v[without]))
    return phi


def shapley_pairwise(values: np.ndarray, n: int) -> np.ndarray:
    """The pairwise estimate (n,) from the values on coalitions(n, "pairwise"): the mean of each
    player's first and last marginal contribution, made efficient by sharing the gap in
    proportion to |phi_i|: a player whose two marginals are 0 (a part the model ignores) keeps
    exactly 0, as its Shapley value is."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (2 * n + 2,):
        raise ValueError(f"expected {2 * n + 2} values (coalitions(n, 'pairwise')), got {v.shape}")
    empty, grand, single, all_but = v[0], v[1], v[2:2 + n], v[2 + n:]
    phi = 0.5 * ((single - empty) + (grand - all_but))
    gap = grand - empty - phi.sum()
    weight = np.abs(phi)
    if weight.sum() <= 0:
        return phi + gap / n
    return phi + gap * weight / weight.sum()


def shapley_kernel(members: np.ndarray, values: np.ndarray) -> np.ndarray:
    """KernelSHAP (Lundberg & Lee 2017) on the coalitions given: the efficient values (n,)
    minimising sum_S k(S) (v(S) - v(empty) - sum_{i in S} phi_i)^2 with the Shapley kernel
    k(S) = (n - 1) / (C(n, |S|) |S| (n - |S|)), subject to sum phi = v(all) - v(empty). Over
    all coalitions it is the Shapley value; on coalitions(n, "kernel") (sizes 1, 2, n-2, n-1,
    the ones the kernel weighs most) an estimate."""
    members = np.asarray(members, dtype=bool)
    v = np.asarray(values, dtype=np.float64)
    n = members.shape[1]
    size = members.sum(1)
    empty, grand = v[size == 0][0], v[size == n][0]
    inner = (size > 0) & (size < n)
    z = members[inner].astype(np.float64)
    k = np.array([(n - 1) / (math.comb(n, s) * s * (n - s)) for s in size[inner]])
    a = z.T @ (k[:, None] * z)
    b = z.T @ (k * (v[inner] - empty))
    ones = np.ones(n)
    ainv_b, ainv_1 = np.linalg.solve(a, b), np.linalg.solve(a, ones)
    lagrange = (ones @ ainv_b - (grand - empty)) / (ones @ ainv_1)
    return ainv_b - lagrange * ainv_1


@dataclass
class GameResult:
    players: Tuple[str, ...]
    members: np.ndarray       # (K, n) bool: the coalitions evaluated
    values: np.ndarray        # (K,) v(S): the similarity with only S visible
    shapley: np.ndarray       # (n,) Shapley values of v (sum: v(all) - v(empty))
    estimator: str

    @property
    def similarity(self) -> float:
        return float(self.values[1])

    @property
    def difference(self) -> np.ndarray:
        """(n,) each player's share of 1 - similarity (the Shapley values of 1 - v)."""
        return -self.shapley

    def hidden_similarity(self, i: int) -> float:
        """The similarity with player i hidden on both faces and everything else visible."""
        want = ~np.eye(len(self.players), dtype=bool)[i]
        row = np.flatnonzero((self.members == want).all(1))
        return float(self.values[row[0]])


def _hidden_inputs(image: np.ndarray, visible: np.ndarray, fill_colour: Sequence[float],
                   sigma: float, fill: str, preprocess: Optional[Preprocess]) -> np.ndarray:
    """The network inputs of the images hide() makes. With ``preprocess`` and the mean fill the
    fill is applied in the network's input space: the image and the fill colour are
    preprocessed once and each coalition picks between them per pixel, which gives the values
    preprocessing each filled image would (preprocessing is per pixel) at a fraction of the
    memory traffic of the game's 146 images."""
    if preprocess is None:
        return hide(image, visible, fill_colour, sigma, fill)
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3 or visible.shape[1:] != img.shape[:2]:
        raise ValueError(f"expected an (H, W, 3) image and (K, H, W) masks, got {img.shape} and "
                         f"{visible.shape}")
    if fill != "mean":
        return preprocess(hide(img, visible, fill_colour, sigma, fill))
    x = preprocess(img[None])                                          # (1, C, H, W)
    colour = np.broadcast_to(np.asarray(fill_colour, np.float64), (1, 1, 1, 3))
    fill_x = preprocess(np.ascontiguousarray(colour))                  # (1, C, 1, 1)
    return np.where(visible[:, None], x, fill_x)


def play(embed: Callable[[np.ndarray], np.ndarray], image_a: np.ndarray, image_b: np.ndarray,
         masks_a: np.ndarray, masks_b: np.ndarray, fill_colour: Sequence[float],
         estimator: str = "kernel", sigma: float = FILL_SIGMA,
         fill: str = "mean", preprocess: Optional[Preprocess] = None) -> GameResult:
    """The game of one pair. image_*: (S, S, 3) in [0, 255] as the network sees them; masks_*:
    (7, S, S) part masks of each face; embed: (N, S, S, 3) images -> (N, D) L2-normalised
    embeddings (one batch per call). preprocess: the network's per-pixel preprocessing,
    (N, S, S, 3) images -> (N, C, S, S) inputs; given, embed takes those inputs instead."""
    pa, pb = player_masks(masks_a), player_masks(masks_b)
    members = coalitions(len(PLAYERS), estimator)
    # row 0 (nothing visible) is not embedded: both inputs would be the same flat image, so its
    # value is exactly 1
    shown = members[1:].astype(np.uint8)
    size = pa.shape[1:]
    # players are disjoint, so "any visible player covers the pixel" is a sum over players
    vis_a = (shown @ pa.reshape(len(pa), -1).astype(np.uint8)).reshape(-1, *size) > 0
    vis_b = (shown @ pb.reshape(len(pb), -1).astype(np.uint8)).reshape(-1, *size) > 0
    batch = np.concatenate([_hidden_inputs(image_a, vis_a, fill_colour, sigma, fill, preprocess),
                            _hidden_inputs(image_b, vis_b, fill_colour, sigma, fill, preprocess)])
    e = np.asarray(embed(batch), dtype=np.float64)
    k = len(shown)
    na = np.maximum(np.linalg.norm(e[:k], axis=1), 1e-12)
    nb = np.maximum(np.linalg.norm(e[k:], axis=1), 1e-12)
    values = np.concatenate([[1.0], np.sum(e[:k] * e[k:], axis=1) / (na * nb)])
    phi = {"exact": shapley_exact, "kernel": shapley_kernel}.get(
        estimator, lambda m, v: shapley_pairwise(v, m.shape[1]))(members, values)
    return GameResult(players=PLAYERS, members=members, values=values, shapley=phi,
                      estimator=estimator)
