"""Part masks from landmarks: placement on a synthetic face, invariants, the exact geometry
against independent brute-force computations, .pts and LaPa readers."""
import numpy as np
import pytest

from export.face_parts import read_lapa_106, read_pts
from export.part_masks import (
    JAW_BAND,
    LAPA106_TO_68,
    MARGIN,
    PART_NAMES,
    convex_hull,
    lapa106_to_68,
    part_masks_from_landmarks,
    polygon_region,
    polyline_band,
)
from zoo.parts import scale_landmarks

W, H = 100, 110


def synthetic_face():
    """A frontal 68-point face in a 100x110 image, built from ellipses (iBUG index layout)."""
    pts = np.zeros((68, 2))
    t = np.linspace(0, np.pi, 17)
    pts[0:17] = np.c_[50 - 40 * np.cos(t), 45 + 50 * np.sin(t)]          # contour, chin at 8
    pts[17:22] = np.c_[np.linspace(20, 42, 5), [36, 34, 33, 34, 36]]     # left brow
    pts[22:27] = np.c_[np.linspace(58, 80, 5), [36, 34, 33, 34, 36]]     # right brow
    pts[27:31] = np.c_[[50] * 4, np.linspace(42, 58, 4)]                 # nose bridge
    pts[31:36] = np.c_[np.linspace(44, 56, 5), [61, 62, 63, 62, 61]]     # nose base
    a = np.linspace(0, 2 * np.pi, 7)[:-1]
    pts[36:42] = np.c_[31 - 7 * np.cos(a), 44 - 3 * np.sin(a)]            # left eye
    pts[42:48] = np.c_[69 - 7 * np.cos(a), 44 - 3 * np.sin(a)]            # right eye
    a = np.linspace(0, 2 * np.pi, 13)[:-1]
    pts[48:60] = np.c_[50 - 12 * np.cos(a), 76 - 5 * np.sin(a)]           # outer lip
    a = np.linspace(0, 2 * np.pi, 9)[:-1]
    pts[60:68] = np.c_[50 - 8 * np.cos(a), 76 - 2 * np.sin(a)]            # inner lip
    return pts


def part(masks, name):
    return masks[PART_NAMES.index(name)]


def test_part_names_and_order():
    assert PART_NAMES == ("hair", "forehead", "cheek", "eyes", "nose", "mouth", "jaw")
    masks = part_masks_from_landmarks(synthetic_face(), H, W)
    assert masks.shape == (7, H, W) and masks.dtype == bool
    assert (masks.sum(0) <= 1).all()  # disjoint
    assert all(m.any() for m in masks)  # every part present on a frontal face


def test_masks_land_where_expected():
    pts = synthetic_face()
    masks = part_masks_from_landmarks(pts, H, W)
    px = lambda p: (int(round(p[1])), int(round(p[0])))  # noqa: E731  (row, col)
    for k in range(36, 48):
        assert part(masks, "eyes")[px(pts[k])], f"eye landmark {k} outside the eyes mask"
    for k in range(17, 27):
        assert part(masks, "eyes")[px(pts[k])], "brows belong to the periocular eyes region"
    for k in (30, 31, 33, 35):
        assert part(masks, "nose")[px(pts[k])]
    for k in range(48, 68):
        assert part(masks, "mouth")[px(pts[k])]
    assert part(masks, "jaw")[92, 50] and part(masks, "jaw")[85, 30]   # chin, lower jaw
    assert part(masks, "cheek")[60, 25] and part(masks, "cheek")[60, 75]
    assert part(masks, "forehead")[22, 50] and not part(masks, "forehead")[50, 50]
    assert part(masks, "hair")[4, 50] and not part(masks, "hair")[60, 50]
    # vertical order of the part centroids: hair < forehead < eyes < nose < mouth < jaw
    rows = {n: np.argwhere(part(masks, n))[:, 0].mean() for n in PART_NAMES}
    order = ["hair", "forehead", "eyes", "nose", "mouth", "jaw"]
    assert [rows[n] for n in order] == sorted(rows[n] for n in order)


def test_masks_stay_in_image_and_scale():
    pts = synthetic_face()
    shifted = pts + [0, -40]  # face partly above the image: masks are clipped, no error
    masks = part_masks_from_landmarks(shifted, H, W)
    full = part_masks_from_landmarks(pts, H, W)
    assert masks.shape == (7, H, W) and part(masks, "eyes").any()
    assert part(masks, "hair").sum() < part(full, "hair").sum() / 2
    # mostly above the frame
    assert part(masks, "forehead").sum() < part(full, "forehead").sum() / 4
    big = part_masks_from_landmarks(scale_landmarks(pts, (H, W), (2 * H, 2 * W)), 2 * H, 2 * W)
    small = part_masks_from_landmarks(pts, H, W)
    up = small.repeat(2, 1).repeat(2, 2)
    for k, name in enumerate(PART_NAMES):
        inter, union = (big[k] & up[k]).sum(), (big[k] | up[k]).sum()
        assert inter / union > 0.85, name


def test_rotated_face_rotates_masks():
    pts = synthetic_face()
    flipped = [W - 1, H - 1] - pts  # rotated 180 degrees: the forehead must follow the brows
    masks = part_masks_from_landmarks(flipped, H, W)
    assert part(masks, "forehead")[H - 1 - 22, W - 1 - 50]
    assert part(masks, "jaw")[H - 1 - 92, W - 1 - 50]


def test_bad_landmarks_raise():
    with pytest.raises(ValueError, match="68, 2"):
        part_masks_from_landmarks(np.zeros((5, 2)), 10, 10)
    with pytest.raises(ValueError, match="eye centres coincide"):
        part_masks_from_landmarks(np.zeros((68, 2)), 10, 10)


def test_read_pts(tmp_path):
    pts = synthetic_face()
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    f = tmp_path / "face.pts"
    f.write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    np.testing.assert_allclose(read_pts(f), pts, atol=1e-3)
    f.write_text(f"version: 1\nn_points:  67\n{{\n{body}\n}}\n")
    with pytest.raises(ValueError, match=r"face\.pts: n_points says 67 but 68"):
        read_pts(f)
    f.write_text("version: 1\nn_points: 2\n{\n1 2\nx y\n}\n")
    with pytest.raises(ValueError, match=r"face\.pts:5: expected 'x y'"):
        read_pts(f)


def test_lapa_106_reader_and_mapping(tmp_path):
    pts68 = synthetic_face()
    pts106 = np.full((106, 2), -1000.0)  # unmapped points far away: they must not matter
    pts106[LAPA106_TO_68] = pts68
    f = tmp_path / "lapa.txt"
    f.write_text("106\n" + "\n".join(f"{x} {y}" for x, y in pts106) + "\n")
    got = read_lapa_106(f)
    np.testing.assert_allclose(lapa106_to_68(got), pts68, atol=1e-4)
    np.testing.assert_array_equal(part_masks_from_landmarks(got, H, W),
                                  part_masks_from_landmarks(pts68, H, W))
    f.write_text("68\n" + "1 2\n" * 68)
    with pytest.raises(ValueError, match=r"lapa\.txt: expected 106 points"):
        read_lapa_106(f)


# ------------------------------------------------- the exact geometry against brute force

def _segment_distance(px, py, a, b):
    """Distance from the point (px, py) to the segment a-b, one point at a time."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return float(np.hypot(px - ax - t * dx, py - ay - t * dy))


def _brute_force_distances(vertices, h, w, closed):
    """(h, w) distance of every pixel centre to the polyline, by a plain loop over pixels."""
    v = [tuple(p) for p in np.asarray(vertices, dtype=np.float64)]
    segments = list(zip(v, v[1:] + v[:1])) if closed else list(zip(v[:-1], v[1:]))
    out = np.empty((h, w))
    for r in range(h):
        for c in range(w):
            out[r, c] = min(_segment_distance(c, r, a, b) for a, b in segments)
    return out


def _matplotlib_inside(vertices, h, w):
    from matplotlib.path import Path
    yy, xx = np.mgrid[0:h, 0:w]
    return Path(vertices).contains_points(np.c_[xx.ravel(), yy.ravel()]).reshape(h, w)


def _random_hulls(seed, count, h, w):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        centre = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h])
        yield convex_hull(centre + rng.normal(0, 0.15 * min(h, w), (9, 2))), rng.uniform(0, 6)


def test_dilated_hull_equals_brute_force():
    """Inside (matplotlib's point-in-path) or within the radius (distance by a loop over pixels):
    every pixel agrees except those within 1e-6 px of the radius, where rounding decides."""
    h, w = 40, 36
    for hull, radius in _random_hulls(0, 12, h, w):
        got = polygon_region(hull, h, w, radius)
        dist = _brute_force_distances(hull, h, w, closed=True)
        want = _matplotlib_inside(hull, h, w) | (dist <= radius)
        undecided = np.abs(dist - radius) < 1e-6
        assert ((got != want) & ~undecided).sum() == 0


def test_polyline_band_equals_brute_force():
    rng = np.random.default_rng(1)
    h, w = 30, 40
    for _ in range(6):
        line = np.cumsum(rng.normal(0, 6, (6, 2)), 0) + [20, 15]
        radius = rng.uniform(0.5, 5)
        dist = _brute_force_distances(line, h, w, closed=False)
        got = polyline_band(line, h, w, radius)
        assert ((got != (dist <= radius)) & (np.abs(dist - radius) >= 1e-6)).sum() == 0


def test_polygon_region_counts_boundary_centres_and_stays_in_image():
    square = np.array([[2.0, 2.0], [6.0, 2.0], [6.0, 6.0], [2.0, 6.0]])  # edges on pixel centres
    got = polygon_region(square, 10, 10)
    assert got[2:7, 2:7].all() and got.sum() == 25
    off_image = polygon_region(square + [-20, 3], 10, 10, radius=2)
    assert not off_image.any()
    half_out = polygon_region(square + [-4, 0], 10, 10)
    assert half_out[2:7, 0:3].all() and half_out.sum() == 15


SUPERSAMPLE = 7  # odd: fine pixel SUPERSAMPLE * i + 3 has the centre of coarse pixel i


def _raster_dilated_hull(hull, h, w, radius):
    """The old raster route at 7x resolution: PIL fills the hull, scipy's distance transform
    dilates it, and the coarse pixel centres are read off."""
    from PIL import Image, ImageDraw
    from scipy import ndimage
    s = SUPERSAMPLE
    fine = (np.asarray(hull) + 0.5) * s - 0.5   # fine pixel-centre coordinates
    img = Image.new("1", (w * s, h * s), 0)
    # PIL puts pixel corners at integers: shift by half a pixel to put centres there
    ImageDraw.Draw(img).polygon([(x + 0.5, y + 0.5) for x, y in fine], fill=1)
    filled = np.asarray(img, dtype=bool)
    dist = ndimage.distance_transform_edt(~filled, sampling=1.0 / s)
    return (dist <= radius)[s // 2::s, s // 2::s]


def test_eyes_nose_mouth_match_a_supersampled_distance_transform():
    """The part masks of the synthetic face against raster + scipy EDT at 7x: pixels may differ
    only within 0.25 px of the dilated boundary (a fine pixel is 1/7 px)."""
    pts = synthetic_face()
    masks = part_masks_from_landmarks(pts, H, W)
    m = MARGIN * np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0))
    hulls = {"eyes": [convex_hull(np.r_[pts[17:22], pts[36:42]]),
                      convex_hull(np.r_[pts[22:27], pts[42:48]])],
             "nose": [convex_hull(pts[27:36])], "mouth": [convex_hull(pts[48:60])]}
    taken = np.zeros((H, W), dtype=bool)
    for name in ("eyes", "nose", "mouth"):  # the priority order of the three
        raster = np.zeros((H, W), dtype=bool)
        exact_distance = np.full((H, W), np.inf)
        for hull in hulls[name]:
            raster |= _raster_dilated_hull(hull, H, W, m)
            inside = _matplotlib_inside(hull, H, W)
            d = np.where(inside, 0.0, _brute_force_distances(hull, H, W, closed=True))
            exact_distance = np.minimum(exact_distance, d)
        want = raster & ~taken
        differ = part(masks, name) != want
        assert differ.sum() <= 0.02 * want.sum(), name
        assert (np.abs(exact_distance[differ] - m) < 0.25).all(), name
        taken |= want


def test_jaw_band_is_the_distance_to_the_contour():
    pts = synthetic_face()
    masks = part_masks_from_landmarks(pts, H, W)
    iod = np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0))
    band = _brute_force_distances(pts[3:14], H, W, closed=False) <= JAW_BAND * iod
    jaw = part(masks, "jaw")
    # above the mouth-corner line the jaw is exactly the band (inside the contour)
    above_mouth = np.mgrid[0:H, 0:W][0] < pts[[48, 54], 1].mean()
    assert jaw[above_mouth].any()
    inside_contour = _matplotlib_inside(pts[3:14], H, W)
    expected = band & inside_contour & above_mouth & ~masks[[3, 4, 5]].any(0)
    assert (jaw[above_mouth] == expected[above_mouth]).all()
