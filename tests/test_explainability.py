"""The paper's explainability metrics on hand-made maps with values known by hand."""
import numpy as np
import pytest

from zoo.metrics import explainability as expl


def blob(n, centres, sigma=1.0):
    uu, vv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return sum(np.exp(-((uu - i) ** 2 + (vv - j) ** 2) / (2 * sigma ** 2)) for i, j in centres)


def test_top10_keeps_ten_percent():
    rng = np.random.default_rng(0)
    maps = rng.random((5, 7, 7)).astype(np.float32)
    keep = expl.top10_activation(maps, 112)
    assert keep.shape == (5, 112, 112)
    target = round(0.1 * 112 * 112)
    up = expl.upsample_maps(maps, 112).numpy()
    for c in range(5):
        kept_min = up[c][keep[c]].min()
        assert kept_min > up[c][~keep[c]].max()             # kept pixels are the largest
        assert (up[c] > kept_min).sum() < target <= keep[c].sum()  # 10%, plus ties at the cut
        assert keep[c].sum() <= 1.02 * target
    # ties: a map with a flat plateau of 20% keeps the whole plateau; a dead map keeps nothing
    plateau = np.zeros((1, 10, 10), np.float32)
    plateau[0, :2] = 1.0
    assert expl.top10_activation(plateau, 10)[0].sum() == 20
    assert expl.top10_activation(np.zeros((1, 7, 7)), 56).sum() == 0


def test_part_iou_by_hand():
    s = 20
    parts = np.zeros((7, s, s), bool)
    parts[5, 14:18, 6:14] = True          # "mouth": 4 x 8 = 32 pixels
    parts[3, 5:8, 3:17] = True            # "eyes": 3 x 14 = 42 pixels
    act = np.zeros((2, s, s), bool)
    act[0, 15:19, 6:14] = True            # mouth shifted down by one row: 3 x 8 = 24 shared
    act[1, 0:2, 0:2] = True               # nowhere
    iou = expl.part_iou(act, parts)
    assert iou.shape == (2, 7)
    assert iou[0, 5] == pytest.approx(24 / (32 + 32 - 24))
    assert iou[0, 3] == 0 and iou[1].max() == 0
    assert expl.best_parts(iou).tolist() == [5, -1]
    assert expl.part_explainability(iou) == pytest.approx((24 / 40 + 0) / 2)


def test_blob_on_mouth_end_to_end():
    """One blob's top-10% region IS the mouth mask -> IoU 1 for that channel."""
    n, s = 14, 112
    fmap = blob(n, [(10, 7)], sigma=1.5)[None].astype(np.float32)
    region = expl.top10_activation(fmap, s)[0]
    parts = np.zeros((7, s, s), bool)
    parts[5] = region
    parts[3, :20] = True
    iou = expl.part_iou(expl.top10_activation(fmap, s), parts)
    assert iou[0, 5] == 1.0 and expl.part_explainability(iou) == 1.0
    ys, xs = np.nonzero(region)
    assert abs(ys.mean() - (10 + 0.5) * s / n) < 2 and abs(xs.mean() - (7 + 0.5) * s / n) < 2


def test_location_consistency_by_hand():
    # 4 images, 3 channels, 7 parts. channel 0: mouth, mouth, mouth, eyes -> A = (1/4 eyes, 3/4
    # mouth); channel 1: nose in all 4; channel 2: never overlaps a part
    ious = np.zeros((4, 3, 7))
    ious[:3, 0, 5] = 0.5
    ious[3, 0, 3] = 0.2
    ious[:, 1, 4] = 0.3
    lc = expl.location_consistency(ious)
    assert lc["A"][0].tolist() == [0, 0, 0, 1, 0, 3, 0]
    # the paper's S_i = sqrt(sum_k (A_ik - 1/7)^2) / 7, written out term by term
    s0 = np.sqrt((0.75 - 1 / 7) ** 2 + (0.25 - 1 / 7) ** 2 + 5 * (1 / 7) ** 2) / 7
    s1 = np.sqrt((1 - 1 / 7) ** 2 + 6 * (1 / 7) ** 2) / 7
    assert lc["S"] == pytest.approx([s0, s1, 0.0], abs=1e-12)
    assert s1 == pytest.approx(0.1322, abs=1e-4)            # the ceiling for 7 parts
    assert lc["LS"] == pytest.approx((s0 + s1) / 3)
    assert lc["S_max"].tolist() == [0.75, 1.0, 0.0]          # our LS-max, the older reading
    assert lc["LS_max"] == pytest.approx(1.75 / 3)
    assert lc["dominant_part"].tolist() == [5, 4, -1]
    assert lc["none_share"].tolist() == [0.0, 0.0, 1.0]
    # a channel landing on every part equally often has S = 0
    uniform = np.zeros((7, 1, 7))
    uniform[np.arange(7), 0, np.arange(7)] = 0.4
    assert expl.location_consistency(uniform)["S"][0] == pytest.approx(0.0, abs=1e-12)


def test_none_below_the_iou_floor():
    # channel 0 touches the mouth with IoU 0.02 on 3 of 4 images: "none" there, not mouth
    ious = np.zeros((4, 2, 7))
    ious[:3, 0, 5] = 0.02
    ious[3, 0, 3] = 0.3
    ious[:, 1, 4] = 0.3
    lc = expl.location_consistency(ious, floor=0.05)
    assert lc["A"][0].tolist() == [0, 0, 0, 1, 0, 0, 0]
    assert lc["none_share"].tolist() == [0.75, 0.0]
    assert lc["dominant_part"].tolist() == [-1, 4]           # mostly none: not a part channel
    assert lc["dominant_share"].tolist() == [0.25, 1.0]
    assert lc["none_fraction"] == pytest.approx(3 / 8)
    # without a floor the sliver counts as mouth
    assert expl.location_consistency(ious, floor=0.0)["dominant_part"].tolist() == [5, 4]


def test_peak_thresholds_and_ring_split():
    n = 7
    m = np.zeros((n, n))
    m[0, 1] = 1.0          # a border peak, the highest
    m[3, 3] = 0.5          # an interior peak, prominence 0.5 of the range
    m[5, 5] = 0.2          # a weak interior peak, prominence 0.2
    cells, proms = expl.peak_prominences(m)
    assert sorted(zip(cells.tolist(), np.round(proms, 6).tolist())) == [
        (1, 1.0), (24, 0.5), (40, 0.2)]
    pc = expl.peak_counts(m[None], thresholds=(0.0, 0.1, 0.3))
    assert pc["0"] == {"all": 3.0, "ring": 1.0, "interior": 2.0}
    assert pc["0.1"] == {"all": 3.0, "ring": 1.0, "interior": 2.0}
    assert pc["0.3"] == {"all": 2.0, "ring": 1.0, "interior": 1.0}
    assert expl.outer_ring(4).sum() == 12 and not expl.outer_ring(4)[1:3, 1:3].any()
    # a plateau is one peak at threshold 0, not one per cell; dead maps are left out
    flat = np.zeros((n, n))
    flat[2:4, 2:4] = 1.0
    assert expl.activation_peaks(flat, 0.0) == 1
    assert expl.peak_counts(np.stack([flat, np.zeros((n, n))]), (0.0,))["0"]["all"] == 1.0


def test_peak_counts():
    n = 14
    assert expl.activation_peaks(blob(n, [(7, 7)], 2.0)) == 1
    assert expl.activation_peaks(blob(n, [(3, 3), (10, 10)], 1.5)) == 2
    assert expl.activation_peaks(blob(n, [(2, 2), (2, 11), (11, 6)], 1.2)) == 3
    assert expl.activation_peaks(np.zeros((n, n))) == 0
    noise = np.random.default_rng(1).random((n, n))
    assert expl.activation_peaks(noise) >= 8
    # a small bump on a big blob's shoulder is below 10% prominence: still one peak
    m = blob(n, [(7, 7)], 3.0) + 0.02 * blob(n, [(7, 11)], 0.7)
    assert expl.activation_peaks(m) == 1
    assert expl.activation_robustness(np.stack([blob(n, [(7, 7)]), blob(n, [(3, 3), (10, 10)]),
                                             np.zeros((n, n))])) == pytest.approx(1.5)


def test_metrics_invariant_to_channel_order():
    rng = np.random.default_rng(2)
    fmaps = rng.random((3, 6, 7, 7)) ** 4
    parts = rng.random((3, 7, 56, 56)) > 0.7
    perm = rng.permutation(6)
    ious = np.stack([expl.part_iou(expl.top10_activation(f, 56), p) for f, p in zip(fmaps, parts)])
    ious_p = np.stack([expl.part_iou(expl.top10_activation(f[perm], 56), p)
                       for f, p in zip(fmaps, parts)])
    assert expl.part_explainability(ious) == pytest.approx(expl.part_explainability(ious_p),
                                                           abs=1e-12)
    lc, lc_p = expl.location_consistency(ious), expl.location_consistency(ious_p)
    assert lc["LS"] == pytest.approx(lc_p["LS"], abs=1e-12)
    np.testing.assert_array_equal(lc["A"][perm], lc_p["A"])
    assert expl.activation_robustness(fmaps) == expl.activation_robustness(fmaps[:, perm])
    lm = rng.random((3, 5, 2)) * 56
    assert expl.location_instability(fmaps, lm, (56, 56)) == pytest.approx(
        expl.location_instability(fmaps[:, perm], lm, (56, 56)), abs=1e-12)


def test_location_instability():
    n, s = 7, 70
    lm = np.array([[[20.0, 20.0], [50.0, 40.0]]] * 4)         # landmarks fixed across images
    stable = np.zeros((4, 1, n, n))
    stable[:, 0, 3, 3] = 1.0                                   # always the same cell
    assert expl.location_instability(stable, lm, (s, s)) == pytest.approx(0.0, abs=1e-12)
    moving = np.zeros((4, 1, n, n))
    for i in range(4):
        moving[i, 0, i, 0] = 1.0                               # peak moves down the map
    py = (np.arange(4) + 0.5) * 10.0
    px = np.full(4, 5.0)
    d = np.hypot(px[:, None] - lm[:, :, 0], py[:, None] - lm[:, :, 1]) / np.hypot(s, s)
    assert expl.location_instability(moving, lm, (s, s)) == pytest.approx(d.std(0).mean())


def test_bad_shapes():
    with pytest.raises(ValueError, match="differ in size"):
        expl.part_iou(np.zeros((2, 10, 10), bool), np.zeros((7, 12, 12), bool))
    with pytest.raises(ValueError):
        expl.top10_activation(np.zeros((7, 7)), 10)


def test_top10_of_a_sparse_map_keeps_only_its_active_pixels():
    # one active cell of 49: its upsampled blob covers < 10% of the pixels; the zero background
    # ties at the 10% cut but is not activation and must not be kept
    m = np.zeros((1, 7, 7), np.float32)
    m[0, 3, 3] = 1.0
    keep = expl.top10_activation(m, 70)[0]
    up = expl.upsample_maps(m, 70).numpy()[0]
    assert keep.sum() == (up > 0).sum() < 0.1 * 70 * 70
    assert keep[35, 35] and not keep[0, 0]


def test_part_precision_by_hand():
    s = 20
    parts = np.zeros((7, s, s), bool)
    parts[5, 14:18, 6:14] = True          # "mouth": 4 x 8 = 32 pixels
    parts[0, 0:10, :] = True              # "hair": the top half, 200 pixels
    act = np.zeros((3, s, s), bool)
    act[0, 15:19, 6:14] = True            # 32 pixels, 24 of them on the mouth
    act[1, 0:2, 0:2] = True               # 4 pixels, all on the (large) hair mask
    prec = expl.part_precision(act, parts)  # act[2]: an empty region
    assert prec.shape == (3, 7)
    assert prec[0, 5] == pytest.approx(24 / 32) and prec[0, 0] == 0
    assert prec[1, 0] == 1.0                # IoU would be 4 / 200: precision ignores part size
    assert expl.part_iou(act, parts)[1, 0] == pytest.approx(4 / 200)
    assert prec[2].max() == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        expl.part_precision(np.zeros((2, 10, 10), bool), np.zeros((7, 12, 12), bool))


def test_evidence_weighs_the_share_of_the_region_on_its_part():
    """Two channels with the same maps, labels and input dependence; one region lies wholly on
    its part, the other half on it: the second's evidence is half the first's."""
    from zoo.channel_parts import explainability_metrics
    rng = np.random.default_rng(3)
    n, s, n_img = 7, 56, 6
    fmaps = np.zeros((n_img, 2, n, n))
    for i in range(n_img):
        fmaps[i, :, 1 + i % 4, 1 + (i * 3) % 4] = 1.0 + rng.random()   # peaks move with the face
    shifted = np.roll(fmaps, 1, axis=-1)
    probes = np.zeros((3, 2, n, n))                                       # silent on blank images
    ious = np.zeros((n_img, 2, 7))
    ious[:, :, 5] = 0.3                                                   # both always "mouth"
    prec = np.zeros((n_img, 2, 7))
    prec[:, 0, 5], prec[:, 1, 5], prec[:, 1, 2] = 1.0, 0.5, 0.1
    lm = rng.random((n_img, 68, 2)) * s
    m = explainability_metrics(fmaps, ious, lm, s, probes, (fmaps, shifted), prec)
    pc = m["per_channel"]
    assert pc["part_precision"] == pytest.approx([1.0, 0.5])
    assert pc["evidence"][0] > 0
    assert pc["evidence"][1] == pytest.approx(0.5 * pc["evidence"][0])
    without = explainability_metrics(fmaps, ious, lm, s, probes, (fmaps, shifted))
    assert without["per_channel"]["evidence"] == pytest.approx([pc["evidence"][0]] * 2)
    assert "part_precision" not in without["per_channel"]


def test_peak_cells_count_where_each_channel_fires():
    """channel_peak_cells (the runtime's place term) counts, per channel, the faces on which its
    map peaks at each cell; faces on which the channel is silent are not counted."""
    from zoo.channel_parts import channel_parts_table, explainability_metrics
    rng = np.random.default_rng(4)
    n, s, n_img = 3, 24, 5
    fmaps = np.zeros((n_img, 2, n, n))
    where = [(0, 0), (1, 1), (1, 1), (2, 1), (1, 1)]
    for i, (r, c) in enumerate(where):
        fmaps[i, 0, r, c] = 1.0 + i
    fmaps[:3, 1, 2, 2] = 2.0                       # channel 1 fires on 3 faces, silent on 2
    probes = np.zeros((3, 2, n, n))
    ious = np.zeros((n_img, 2, 7))
    ious[:, :, 3] = 0.3
    lm = rng.random((n_img, 68, 2)) * s
    m = explainability_metrics(fmaps, ious, lm, s, probes, (fmaps, np.roll(fmaps, 1, -1)))
    counts = m["per_channel"]["peak_cells"]
    expected = [[0] * 9, [0] * 9]
    for r, c in where:
        expected[0][r * n + c] += 1
    expected[1][2 * n + 2] = 3
    assert counts == expected
    assert channel_parts_table(m)["channel_peak_cells"] == expected


def test_peak_cells_only_for_small_maps():
    """The place term was chosen at 7 x 7 and hurt at 14 x 14: maps larger than
    PLACE_MAX_MAP_SIZE get no channel_peak_cells, so explain ranks them without it."""
    from export.channel_table import PLACE_MAX_MAP_SIZE
    from zoo.channel_parts import channel_parts_table, explainability_metrics
    rng = np.random.default_rng(5)
    n_img, s = 4, 56
    ious = np.zeros((n_img, 2, 7))
    ious[:, :, 3] = 0.3
    lm = rng.random((n_img, 68, 2)) * s
    for n, has in ((PLACE_MAX_MAP_SIZE, True), (PLACE_MAX_MAP_SIZE + 1, False)):
        fmaps = rng.random((n_img, 2, n, n))
        m = explainability_metrics(fmaps, ious, lm, s, np.zeros((3, 2, n, n)),
                                   (fmaps, np.roll(fmaps, 1, -1)))
        assert ("channel_peak_cells" in channel_parts_table(m)) is has
