"""The part-swap game (zoo.metrics.faithfulness): the swap itself on ORL faces, the similarity
fit, and the model-free scorer."""
import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull

from zoo.data.orl import orl_landmark_table, orl_root
from zoo.metrics.faithfulness import (
    DILATE,
    FEATHER,
    PART_HULLS,
    SWAP_PARTS,
    apply_transform,
    inter_ocular_distance,
    orl_swap_pairs,
    similarity_transform,
    swap_game_score,
    swap_part,
    swapped_part_first,
)


def _orl(key):
    """(RGB uint8 array, (68, 2) float64 landmarks) of an ORL image key 's<k>/<n>.pgm'."""
    with Image.open(orl_root() / key) as im:
        img = np.asarray(im.convert("RGB"))
    return img, orl_landmark_table()[0][key].astype(np.float64)


def _similarity(angle_deg, scale, shift):
    t = np.deg2rad(angle_deg)
    lin = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return np.concatenate([lin, np.asarray(shift, dtype=np.float64)[:, None]], axis=1)


def _distance_to_hulls(pts, part, height, width):
    """Each pixel centre's signed distance to the part's hulls (<= 0 inside), independent of the
    module: scipy's hull, rasterised by PIL, and scipy's Euclidean distance transform."""
    canvas = Image.new("1", (width, height), 0)
    for group in PART_HULLS[part]:
        points = pts[list(group)]
        hull = points[ConvexHull(points).vertices]
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in hull.tolist()], fill=1, outline=1)
    inside = np.asarray(canvas, dtype=bool)
    # negative inside: how far a pixel centre is from leaving the hulls
    return ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)


@pytest.fixture(scope="module")
def faces():
    return _orl("s1/1.pgm"), _orl("s7/3.pgm")


# ------------------------------------------------------------------------------- the similarity

def test_similarity_transform_recovers_a_known_similarity_in_float64():
    _, pts = _orl("s3/2.pgm")
    truth = _similarity(23.0, 1.37, (-11.25, 40.5))
    dst = apply_transform(truth, pts)
    fitted = similarity_transform(pts, dst)
    assert fitted.dtype == np.float64 and fitted.shape == (2, 3)
    np.testing.assert_allclose(fitted, truth, rtol=0, atol=1e-10)
    # and it is the least-squares fit when the points do not match exactly
    rng = np.random.default_rng(0)
    noisy = dst + rng.normal(0, 0.5, dst.shape)
    fitted = similarity_transform(pts, noisy)
    best = np.sum((apply_transform(fitted, pts) - noisy) ** 2)
    for angle, scale in ((0.5, 0.0), (0.0, 0.01)):  # nudging it makes the fit worse
        t = np.deg2rad(angle)
        nudge = (1 + scale) * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        moved = fitted.copy()
        moved[:, :2] = nudge @ fitted[:, :2]
        assert np.sum((apply_transform(moved, pts) - noisy) ** 2) > best


def test_similarity_transform_never_reflects():
    _, pts = _orl("s3/2.pgm")
    mirrored = pts * np.array([-1.0, 1.0])
    fitted = similarity_transform(pts, mirrored)
    assert np.linalg.det(fitted[:, :2]) > 0


def test_similarity_transform_rejects_bad_points():
    with pytest.raises(ValueError, match="same shape"):
        similarity_transform(np.zeros((68, 2)) + np.arange(68)[:, None], np.zeros((67, 2)))
    with pytest.raises(ValueError, match="same point"):
        similarity_transform(np.ones((5, 2)), np.arange(10.0).reshape(5, 2))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        similarity_transform(np.zeros((5, 3)), np.zeros((5, 3)))


# ------------------------------------------------------------------------------------- the swap

@pytest.mark.parametrize("part", SWAP_PARTS)
def test_swap_changes_the_part_and_nothing_far_from_it(faces, part):
    (img_a, pts_a), (img_b, pts_b) = faces
    result = swap_part(img_a, pts_a, img_b, pts_b, part)
    out = np.asarray(result.image)
    assert out.shape == img_a.shape and result.part == part
    assert result.mask.shape == img_a.shape[:2] and result.mask.dtype == np.float32
    assert result.mask.min() >= 0 and result.mask.max() <= 1
    iod = inter_ocular_distance(pts_a)
    dist = _distance_to_hulls(pts_a, part, *img_a.shape[:2])
    # the blur's reach: the dilation plus 4 sigma, plus a pixel for rasterisation
    far = dist > (DILATE + 4 * FEATHER) * iod + 1.5
    assert far.sum() > 0.5 * far.size
    assert np.array_equal(out[far], img_a[far])
    assert (result.mask[far] == 0).all()
    inside = dist <= 0
    # about 0.95 on the hull's edges (1.7 sigma in from the dilated edge), less at its corners
    assert result.mask[inside].min() >= 0.8
    assert result.mask[dist <= -2].min() >= 0.97
    changed = np.abs(out[inside].astype(int) - img_a[inside].astype(int)).max(1) > 2
    assert changed.mean() > 0.5, f"only {changed.mean():.0%} of the {part} pixels changed"


@pytest.mark.parametrize("part", SWAP_PARTS)
def test_swapping_a_face_with_itself_changes_nothing(faces, part):
    (img_a, pts_a), _ = faces
    result = swap_part(Image.fromarray(img_a), pts_a, img_a, pts_a, part)
    np.testing.assert_allclose(result.transform_b_to_a, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    diff = np.abs(np.asarray(result.image).astype(int) - img_a.astype(int))
    assert diff.max() <= 1


def _warp_with_scipy(img, a_to_b, out_hw):
    """img moved by the similarity a_to_b (pixel centres at integers), bilinear, by scipy: an
    implementation independent of the module's PIL warp."""
    lin, off = a_to_b[:, :2], a_to_b[:, 2]
    inv = np.linalg.inv(lin)
    # scipy indexes (row, col) = (y, x): swap the axes of the (x, y) map
    swap = np.array([[0, 1], [1, 0]])
    matrix = swap @ inv @ swap
    offset = swap @ (-inv @ off)
    channels = [ndimage.affine_transform(img[..., c].astype(np.float64), matrix, offset,
                                         output_shape=out_hw, order=1, mode="constant")
                for c in range(img.shape[2])]
    return np.clip(np.rint(np.stack(channels, -1)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("part", SWAP_PARTS)
def test_b_part_lands_where_a_part_is(faces, part):
    (img_a, pts_a), _ = faces
    # B is A moved, turned and enlarged on a bigger canvas: a known similarity
    a_to_b = _similarity(12.0, 1.3, (25.0, 8.0))
    img_b = _warp_with_scipy(img_a, a_to_b, (170, 150))
    pts_b = apply_transform(a_to_b, pts_a)
    result = swap_part(img_a, pts_a, img_b, pts_b, part)
    np.testing.assert_allclose(apply_transform(result.transform_b_to_a, pts_b), pts_a,
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.transform_b_to_a @ np.vstack([a_to_b, [0, 0, 1]]),
                               [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    # the pixels agree too: B's part sits on A's, up to two bilinear resamplings
    core = result.mask >= 0.99
    err = np.abs(np.asarray(result.image)[core].astype(float) - img_a[core]).mean()
    # ... and much better than with B's landmarks one pixel off
    off = swap_part(img_a, pts_a, img_b, pts_b + [1.0, 0.0], part)
    err_off = np.abs(np.asarray(off.image)[core].astype(float) - img_a[core]).mean()
    assert err < 0.6 * err_off, (err, err_off)


def test_swap_keeps_a_where_b_has_no_pixels(faces):
    (img_a, pts_a), (img_b, pts_b) = faces
    # B cut off above its nose tip: its eyes would come from outside its frame
    cut = int(pts_b[30, 1])
    result = swap_part(img_a, pts_a, img_b[cut:], pts_b - [0, cut], "eyes")
    assert result.mask.max() == 0
    assert np.array_equal(np.asarray(result.image), img_a)


def test_swap_rejects_bad_input(faces):
    (img_a, pts_a), (img_b, pts_b) = faces
    with pytest.raises(ValueError, match="unknown part 'ears'"):
        swap_part(img_a, pts_a, img_b, pts_b, "ears")
    with pytest.raises(ValueError, match=r"pts_b: expected \(68, 2\)"):
        swap_part(img_a, pts_a, img_b, pts_b[:67], "nose")
    with pytest.raises(ValueError, match="img_a: an image array must be uint8"):
        swap_part(img_a.astype(np.float32), pts_a, img_b, pts_b, "nose")
    with pytest.raises(ValueError, match=r"img_b: expected .* \(H, W, 3\)"):
        swap_part(img_a, pts_a, img_b[..., :2], pts_b, "nose")
    with pytest.raises(ValueError, match="dilate"):
        swap_part(img_a, pts_a, img_b, pts_b, "nose", dilate=-0.1)
    with pytest.raises(ValueError, match="finite"):
        swap_part(img_a, pts_a + np.nan, img_b, pts_b, "nose")


# ---------------------------------------------------------------------------------- the score

def test_swapped_part_first():
    assert swapped_part_first({"eyes": 0.4, "nose": 0.1, "forehead": 0.2}, "eyes")
    assert not swapped_part_first({"eyes": 0.4, "nose": 0.1, "forehead": 0.5}, "eyes")
    assert not swapped_part_first({"eyes": 0.4, "mouth": 0.4}, "mouth")  # a tie is not first
    assert swapped_part_first({"mouth": -0.1, "cheek": -0.3}, "mouth")
    with pytest.raises(ValueError, match="no value for the swapped part 'nose'"):
        swapped_part_first({"eyes": 0.4}, "nose")
    with pytest.raises(ValueError, match="not finite"):
        swapped_part_first({"eyes": float("nan"), "nose": 0.1}, "nose")


def test_swap_game_score_counts_only_swaps_that_moved_the_model():
    rows = [
        {"part": "eyes", "change": 0.10, "ranked_first": True},
        {"part": "eyes", "change": 0.05, "ranked_first": False},
        {"part": "nose", "change": 0.01, "ranked_first": True},     # below: left out
        {"part": "mouth", "change": 0.03, "ranked_first": True},
        {"part": "mouth", "change": 0.02, "ranked_first": False},   # at the threshold: counted
        {"part": "nose", "change": 0.0199, "ranked_first": False},  # below: left out
        {"part": "eyes", "change": 0.50, "ranked_first": np.bool_(True)},
    ]
    got = swap_game_score(rows)
    assert got["n_counted"] == 5 and got["n_first"] == 3 and got["n_below_min_change"] == 2
    assert got["score"] == pytest.approx(3 / 5) and got["min_change"] == 0.02
    assert got["by_part"]["eyes"] == {"score": pytest.approx(2 / 3), "n_counted": 3,
                                      "n_first": 2}
    assert got["by_part"]["mouth"] == {"score": 0.5, "n_counted": 2, "n_first": 1}
    assert got["by_part"]["nose"] == {"score": None, "n_counted": 0, "n_first": 0}
    everything = swap_game_score(rows, min_change=0.0)
    assert everything["n_counted"] == 7 and everything["n_first"] == 4
    assert everything["by_part"]["nose"]["score"] == 0.5
    assert swap_game_score(rows, min_change=1.0)["score"] is None


def test_swap_game_score_rejects_bad_rows():
    with pytest.raises(ValueError, match=r"row 1: missing \['ranked_first'\]"):
        swap_game_score([{"part": "eyes", "change": 0.1, "ranked_first": True},
                         {"part": "eyes", "change": 0.1}])
    with pytest.raises(ValueError, match="row 0: part 'jaw'"):
        swap_game_score([{"part": "jaw", "change": 0.1, "ranked_first": True}])
    with pytest.raises(ValueError, match="row 0: ranked_first must be a bool"):
        swap_game_score([{"part": "nose", "change": 0.1, "ranked_first": 1}])
    with pytest.raises(ValueError, match="row 0: change is not finite"):
        swap_game_score([{"part": "nose", "change": float("nan"), "ranked_first": True}])


# ---------------------------------------------------------------------------------- the pairs

def test_orl_swap_pairs_are_deterministic_and_cross_identity():
    keys = sorted(orl_landmark_table()[0])[:60]   # 's1/1.pgm', ...: several identities
    pairs = orl_swap_pairs(keys, seed=3, n_pairs=40)
    assert len(pairs) == 40 and len(set(pairs)) == 40
    assert all(a.split("/")[0] != b.split("/")[0] for a, b in pairs)
    assert all(a in keys and b in keys for a, b in pairs)
    assert pairs == orl_swap_pairs(list(reversed(keys)), seed=3, n_pairs=40)
    assert pairs != orl_swap_pairs(keys, seed=4, n_pairs=40)
    short = [k.removesuffix(".pgm") for k in keys]
    assert orl_swap_pairs(short, 3, 40) == [(a[:-4], b[:-4]) for a, b in pairs]


def test_orl_swap_pairs_rejects_bad_requests():
    with pytest.raises(ValueError, match="not an ORL key"):
        orl_swap_pairs(["s1/1", "face.png"], 0, 1)
    with pytest.raises(ValueError, match="only 2 ordered pairs"):
        orl_swap_pairs(["s1/1", "s2/1"], 0, 3)
    with pytest.raises(ValueError, match="more than once"):
        orl_swap_pairs(["s1/1", "s1/1.pgm", "s2/1"], 0, 1)
    assert orl_swap_pairs(["s1/1", "s1/2"], 0, 0) == []
