"""Input-dependence measures and the evidence ranking on hand-made maps with known answers."""
import numpy as np
import pytest
import torch

from export.channel_table import rank_channels
from zoo.data.content_free import CONTENT_FREE_KINDS, content_free_images, random_content_free_batch
from zoo.ecloss import content_free_term
from zoo.metrics import input_dependence
from zoo.templates import build_templates


def spike(n, cell, value=1.0):
    m = np.zeros((n, n))
    m[cell] = value
    return m


def maps_of(n, cells_per_channel, value=1.0):
    """(C, n, n): channel c has a single spike at cells_per_channel[c]."""
    return np.stack([spike(n, cell, value) for cell in cells_per_channel])


N = 7


@pytest.fixture
def faces_and_probes():
    rng = np.random.default_rng(0)
    faces = []
    for i in range(20):
        eye_cell = (2, 2 + (i % 3))                       # ch 1: a part detector (moves a bit)
        faces.append(maps_of(N, [(0, 1), eye_cell, (3, 3), (4, 4)]))
    faces = np.stack(faces)
    faces[:, 3] = 0.0                                     # ch 3: dead
    faces[:, 2] += 0.01 * rng.random((20, N, N))          # ch 2: fires at one interior cell
    probes = np.stack([maps_of(N, [(0, 1), (5, 5), (0, 0), (4, 4)], value=v)
                       for v in (0.9, 0.8, 1.0, 0.7)])
    probes[:, 2] = 0.0                                    # ch 2 is silent on content-free input
    return faces, probes


def test_fixed_cell_channels(faces_and_probes):
    faces, probes = faces_and_probes
    fixed = input_dependence.fixed_cell_channels(faces, probes)
    # ch 0 peaks at (0, 1) on every face and every probe: fixed; ch 1 moves over faces; ch 2 is
    # silent on the probes; ch 3 is dead (never "fixed")
    assert fixed["fixed"].tolist() == [True, False, False, False]
    assert fixed["dead"].tolist() == [False, False, False, True]
    assert fixed["modal_cell"][0] == 1 and fixed["face_agreement"][0] == 1.0
    # the probes must fire at the modal cell on at least half of them
    half = probes.copy()
    half[:3, 0] = maps_of(N, [(6, 6)] * 3)
    assert not input_dependence.fixed_cell_channels(faces, half)["fixed"][0]
    # a probe peak below 10% of the face peak does not count as firing
    weak = probes * 0.05
    assert not input_dependence.fixed_cell_channels(faces, weak)["fixed"][0]


def test_graded_input_dependence(faces_and_probes):
    faces, probes = faces_and_probes
    dep = input_dependence.input_dependence(faces, probes)
    assert dep[0] == pytest.approx(0.0, abs=1e-12)        # same map, full strength on a probe
    assert dep[1] == pytest.approx(1.0)                   # probes fire elsewhere: no overlap
    assert dep[2] == pytest.approx(1.0)                   # silent on every probe
    assert dep[3] == 0.0                                  # dead: no evidence
    # half the strength at the same place: dependence 0.5
    half = probes.copy()
    half[:, 0] = spike(N, (0, 1), 0.5)                    # the faces' peak is 1
    assert input_dependence.input_dependence(faces, half)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same"):
        input_dependence.input_dependence(faces, probes[:, :2])


def test_translation_following():
    n = 7
    a = np.stack([maps_of(n, [(3, 2), (0, 1), (2, 6)])])
    b = np.stack([maps_of(n, [(3, 3), (0, 1), (2, 0)])])  # ch 0 follows, ch 1 stays
    res = input_dependence.translation_following(a, b)
    # ch 2 sits on the last column and cannot follow: left out
    # ch 1 stays put on its only face: a position channel (1 of the 2 channels with pairs)
    per_channel = res.pop("channel_stays")
    assert res == {"follows": 0.5, "stays": 0.5, "position_channels": 0.5, "pairs": 2}
    assert per_channel.tolist() == [0.0, 1.0, 0.0]            # ch 2 had no pair: 0


def test_ring_share():
    assert input_dependence.uniform_ring_share(7) == pytest.approx(24 / 49)
    assert input_dependence.ring_share(np.array([0, 1, 24, 48]), 7) == 0.75    # 24 is the centre


def test_rank_channels_by_evidence():
    peaks = np.array([8.0, 1.0, 2.0, 0.5])
    table = {"channel_evidence": [0.0, 0.9, 0.5, 0.9], "channel_typical_peak": [8, 1, 1, 1]}
    # ch 0 is the strongest but has no evidence (a fixed-cell channel): last
    # ch 2 fires at 2x its typical peak (capped at 2): 0.5 * 2 = 1.0 > ch 1's 0.9 * 1
    assert rank_channels(peaks, table) == [2, 1, 3, 0]
    # no table: raw peak
    assert rank_channels(peaks) == [0, 2, 1, 3]
    # all-zero evidence: ties broken by the raw peak
    zero = {"channel_evidence": [0.0] * 4, "channel_typical_peak": [1.0] * 4}
    assert rank_channels(peaks, zero) == [0, 2, 1, 3]
    with pytest.raises(ValueError, match="channels"):
        rank_channels(peaks[:3], table)


def test_rank_channels_one_part_at_a_time():
    # six channels: three eye channels with the best scores, two nose, one of no part, and an
    # eye channel with no evidence (fixed): eyes, nose, eyes, nose, eyes, then the rest
    peaks = np.ones(7)
    table = {"channel_evidence": [0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.0],
             "channel_typical_peak": [1.0] * 7, "channel_part": [3, 3, 3, 4, 4, -1, 3]}
    assert rank_channels(peaks, table, one_part_at_a_time=True) == [0, 3, 1, 4, 2, 5, 6]
    # the default: evidence order, whatever the parts (the no-part channel 5 scores best)
    assert rank_channels(peaks, table) == [5, 0, 1, 2, 3, 4, 6]


def test_content_free_images():
    imgs = content_free_images(32)
    assert list(imgs) == list(CONTENT_FREE_KINDS)
    assert all(im.size == (32, 32) and im.mode == "RGB" for im in imgs.values())
    assert np.asarray(imgs["grey"]).std() == 0 and np.asarray(imgs["noise"]).std() > 50
    g = torch.Generator().manual_seed(0)
    batch = random_content_free_batch(6, 32, g)
    assert batch.shape == (6, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1
    again = random_content_free_batch(6, 32, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)                     # a function of the generator only


def test_content_free_term_is_zero_only_for_silent_maps():
    t = torch.from_numpy(build_templates(7, 400, 2.0, 1.0))
    zero = torch.zeros(3, 49, dtype=torch.float64)
    assert float(content_free_term(zero, t)) == pytest.approx(0.0, abs=1e-12)
    # any firing map scores below 0, and the term's gradient pushes activations down
    x = torch.rand(3, 49, dtype=torch.float64, requires_grad=True)
    term = content_free_term(x, t)
    assert float(term.detach()) < 0
    term.backward()
    assert (x.grad < 0).all()
    # float64 brute force of log(M * P(T-|x)) for one map
    xi = x.detach()[0]
    logits = t.reshape(len(t), -1) @ xi
    expected = float(logits[-1] - torch.logsumexp(logits, 0) + np.log(len(t)))
    assert float(content_free_term(xi[None], t)) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="negative template"):
        content_free_term(x.detach(), t[:-1])


def test_content_free_penalty_caps_the_step():
    from zoo.ecloss import content_free_penalty
    # |term| <= 1: exactly -weight x term, gradient -weight
    small = torch.tensor(-0.5, requires_grad=True)
    out = content_free_penalty(small, 2.0)
    out.backward()
    assert float(out.detach()) == pytest.approx(1.0) and float(small.grad) == pytest.approx(-2.0)
    # a spike of -30 adds at most the weight to the loss and its gradient shrinks 30 times,
    # in the same direction
    big = torch.tensor(-30.0, requires_grad=True)
    out = content_free_penalty(big, 2.0)
    out.backward()
    assert float(out.detach()) == pytest.approx(2.0)
    assert float(big.grad) == pytest.approx(-2.0 / 30)
