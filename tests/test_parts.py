"""Part masks from landmarks: placement on a synthetic face, invariants, .pts and LaPa readers."""
import numpy as np
import pytest

from zoo.parts import (
    LAPA106_TO_68,
    PART_NAMES,
    lapa106_to_68,
    part_masks_from_landmarks,
    read_lapa_106,
    read_pts,
    scale_landmarks,
)

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
