"""The mean 68-point face shape, its 5 points and its fit to 5 points (export.face_shape)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.face_shape import (
    MEAN_SHAPE_68,
    MEAN_SHAPE_FILE,
    POINTS5_FROM_68,
    apply_similarity,
    crop_default_points5,
    fit_shape_to_points5,
    points5_from_68,
    similarity_transform,
)

ROOT = Path(__file__).resolve().parents[1]


def _rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


@pytest.mark.parametrize("scale, angle, shift", [(80.0, 0.0, (56.0, 60.0)),
                                                 (37.5, 0.4, (-12.0, 300.5)),
                                                 (210.0, -2.9, (1000.0, 8.25)),
                                                 (1e-3, 1.0, (0.0, 0.0))])
def test_fit_recovers_a_known_similarity_exactly(scale, angle, shift):
    face = apply_similarity(MEAN_SHAPE_68, scale, _rotation(angle), np.asarray(shift))
    fitted = fit_shape_to_points5(points5_from_68(face), regression=False)
    np.testing.assert_allclose(fitted, face, rtol=0, atol=1e-9 * max(scale, 1.0))
    # the regression commutes with every similarity transform of the 5 points
    p5 = points5_from_68(face)
    base = fit_shape_to_points5(p5)
    moved = fit_shape_to_points5(apply_similarity(p5, 2.5, _rotation(0.7), np.array([3.0, -4.0])))
    np.testing.assert_allclose(moved, apply_similarity(base, 2.5, _rotation(0.7),
                                                       np.array([3.0, -4.0])),
                               rtol=0, atol=1e-8 * max(scale, 1.0))
    got_scale, got_rotation, got_shift = similarity_transform(MEAN_SHAPE_68, face)
    assert got_scale == pytest.approx(scale, rel=1e-12)
    np.testing.assert_allclose(got_rotation, _rotation(angle), atol=1e-12)


def test_similarity_is_the_least_squares_fit_in_complex_form():
    """In 2-D a similarity without reflection is z -> a z + b (a, b complex): its least-squares
    solution has a closed form, independent of the SVD route."""
    rng = np.random.default_rng(0)
    src, dst = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)) * 3 + 1
    zs, zd = src @ [1, 1j], dst @ [1, 1j]
    zs_c, zd_c = zs - zs.mean(), zd - zd.mean()
    a = (np.conj(zs_c) * zd_c).sum() / (np.abs(zs_c) ** 2).sum()
    want = a * (zs - zs.mean()) + zd.mean()
    got = apply_similarity(src, *similarity_transform(src, dst)) @ [1, 1j]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_a_mirrored_face_is_not_fitted_by_a_reflection():
    mirrored = MEAN_SHAPE_68 * [-1, 1]  # x flipped: the "left" eye now lies on the right
    _, rotation, _ = similarity_transform(points5_from_68(MEAN_SHAPE_68),
                                          points5_from_68(mirrored))
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    fitted = fit_shape_to_points5(points5_from_68(mirrored))
    assert np.abs(fitted - mirrored).max() > 0.1  # a reflection would have matched exactly


def test_points5_from_68():
    assert POINTS5_FROM_68 == (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))
    pts = np.arange(136, dtype=np.float64).reshape(68, 2)
    np.testing.assert_array_equal(points5_from_68(pts), [pts[36:42].mean(0), pts[42:48].mean(0),
                                                         pts[30], pts[48], pts[54]])
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        points5_from_68(np.zeros((5, 2)))


@pytest.mark.parametrize("points, message", [
    (np.zeros((4, 2)), r"5 \(x, y\) points .* shape \(4, 2\)"),
    (np.zeros((5, 3)), r"shape \(5, 3\)"),
    ([[0, 0], [1, 0], [np.nan, 1], [0, 2], [1, 2]], "finite"),
    ([[0, 0], [1, 0], [0.5, 1], [0, np.inf], [1, 2]], "finite"),
    ([[3, 4], [3, 4], [3, 6], [2, 8], [4, 8]], "eye points coincide"),
])
def test_bad_points_raise(points, message):
    with pytest.raises(ValueError, match=message):
        fit_shape_to_points5(points)


def test_mean_shape_file():
    record = json.loads(MEAN_SHAPE_FILE.read_text())
    shape = np.asarray(record["mean_shape_68"], dtype=np.float64)
    assert shape.shape == (68, 2) and np.isfinite(shape).all()
    np.testing.assert_array_equal(shape, MEAN_SHAPE_68)
    # the eye frame the file promises: eye centres at (-0.5, 0) and (0.5, 0), y down
    np.testing.assert_allclose(points5_from_68(shape)[:2], [[-0.5, 0], [0.5, 0]], atol=1e-5)
    assert shape[8, 1] > shape[33, 1] > shape[27, 1] > shape[19, 1]  # chin, nose, brows
    assert MEAN_SHAPE_FILE.parent.name == "data" and MEAN_SHAPE_FILE.parent.parent.name == "export"
    setup = (ROOT / "setup.py").read_text()
    assert '"export": ["data/*.json"]' in setup  # the file ships in the wheel


def test_mean_shape_comes_from_the_training_identities_only():
    from zoo.data.orl import orl_identity_split
    train, heldout = orl_identity_split()
    prov = json.loads(MEAN_SHAPE_FILE.read_text())["provenance"]["mean_shape_68"]
    assert prov["identities"] == train and prov["num_shapes"] == 10 * len(train)
    assert not set(prov["identities"]) & set(heldout)


def test_crop_default_points5():
    p112, p224 = crop_default_points5(112), crop_default_points5(224)
    np.testing.assert_allclose(p224 + 0.5, 2 * (p112 + 0.5))  # pixel centres at integers
    left_eye, right_eye, nose, mouth_left, mouth_right = p112
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert ((p112 > 0.2 * 112) & (p112 < 0.8 * 112)).all()  # well inside the crop
    fitted = fit_shape_to_points5(p112)  # the runtime's fallback gives a face on the crop
    assert ((fitted > -0.1 * 112) & (fitted < 1.1 * 112)).all()
    with pytest.raises(ValueError, match="positive"):
        crop_default_points5(0)


def test_runtime_modules_import_no_torch_scipy_or_zoo():
    code = ("import sys, numpy as np\n"
            "import export.face_shape as fs, export.part_masks as pm\n"
            "pts = fs.fit_shape_to_points5(fs.crop_default_points5(112))\n"
            "pm.overlay_part_masks(np.zeros((112, 112), np.uint8),"
            " pm.part_masks_from_landmarks(pts, 112, 112))\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'scipy', 'zoo'}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_regression_predicts_its_training_mean_at_the_canonical_points():
    """At its mean input (mean_x) the regression returns its mean 68-point shape (the numbers
    in the data file, to the small similarity that maps mean_x onto the canonical points); and
    that shape is a face: eyes above the nose
    above the mouth above the chin, left eye on the image left."""
    import json

    from export.face_shape import MEAN_SHAPE_FILE
    reg = json.loads(MEAN_SHAPE_FILE.read_text())["points5_regression"]
    canon = np.asarray(reg["canonical_points5"])
    mx = np.asarray(reg["mean_x"]).reshape(5, 2)
    y = fit_shape_to_points5(mx)
    # mean_x lies in the canonical frame already (up to its own small similarity offset)
    np.testing.assert_allclose(y, np.asarray(reg["mean_y"]).reshape(68, 2), atol=0.02)
    assert canon[0, 0] < canon[1, 0]
    eyes, nose, mouth, chin = y[36:48, 1].mean(), y[30, 1], y[48:60, 1].mean(), y[8, 1]
    assert eyes < nose < mouth < chin and y[36:42, 0].mean() < y[42:48, 0].mean()
