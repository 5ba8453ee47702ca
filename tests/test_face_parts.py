"""Per-face part masks and channel labels in the runtime (export.face_parts)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.explainer import FaceExplainer
from export.face_parts import (
    PART_IOU_FLOOR,
    FaceLocator,
    channel_labels,
    channel_part_ious,
    read_landmarks,
)
from export.part_masks import PART_NAMES
from zoo.data.orl import orl_landmark_table, orl_root
from zoo.exporting.model_export import export_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "export_tiny"


def test_ious_against_brute_force():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 20, 20)) < 0.2
    parts = rng.random((7, 20, 20)) < 0.3
    masks[4] = False                     # a silent channel: IoU 0 with everything
    got = channel_part_ious(masks, parts)
    for c in range(5):
        for k in range(7):
            union = np.logical_or(masks[c], parts[k]).sum()
            want = np.logical_and(masks[c], parts[k]).sum() / union if union else 0.0
            assert got[c, k] == pytest.approx(want, abs=1e-6)
    names, best = channel_labels(masks, parts)
    assert names[4] is None and best[4] == 0


def test_labels_follow_the_face():
    table, _ = orl_landmark_table()
    pts = table["s6/1.pgm"]
    face = FaceLocator(None).locate(Image.new("RGB", (92, 112)), pts)
    parts = face.part_masks(56)
    eyes = PART_NAMES.index("eyes")
    names, _ = channel_labels(parts[[eyes]], parts)
    assert names == ["eyes"]
    # the same region on a face whose landmarks sit 20 px lower lands on another part
    lower = FaceLocator(None).locate(Image.new("RGB", (92, 112)), pts + [0, 20])
    moved, _ = channel_labels(parts[[eyes]], lower.part_masks(56))
    assert moved != ["eyes"]
    corner = np.zeros((1, 56, 56), bool)
    corner[0, :3, :3] = True             # a corner: no part (below the IoU floor)
    assert channel_labels(corner, parts)[0] == [None] and PART_IOU_FLOOR > 0


def test_read_landmarks(tmp_path):
    pts = np.arange(136, dtype=float).reshape(68, 2)
    f = tmp_path / "face.pts"
    f.write_text("version: 1\nn_points: 68\n{\n" + "".join(f"{x} {y}\n" for x, y in pts) + "}\n")
    np.testing.assert_array_equal(read_landmarks(f), pts - 1)      # iBUG files are 1-based
    txt = tmp_path / "face.txt"
    txt.write_text("".join(f"{x} {y}\n" for x, y in pts))
    np.testing.assert_array_equal(read_landmarks(txt), pts)
    bad = tmp_path / "bad.pts"
    bad.write_text("1 2 3\n")
    with pytest.raises(ValueError, match="bad.pts"):
        read_landmarks(bad)
    with pytest.raises(ValueError, match="nope.pts: cannot read"):
        read_landmarks(tmp_path / "nope.pts")


def test_crop_prior_without_a_detector():
    face = FaceLocator(None).locate(Image.new("RGB", (100, 100)))
    assert face.source == "crop" and face.points.shape == (68, 2)
    eyes_y = face.points[36:48, 1].mean()
    mouth_y = face.points[48:68, 1].mean()
    assert 20 < eyes_y < mouth_y < 90      # a face in the middle of a zoo-style crop


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fp_zoo") / "tiny-ecloss"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py"))
    out = tmp_path_factory.mktemp("fp_out")
    export_model(folder, out, torchscript=False, log=lambda *_: None)
    return out


def test_explain_labels_channels_on_this_face(exported):
    table, _ = orl_landmark_table()
    path = orl_root() / "s6/1.pgm"
    explainer = FaceExplainer(exported, device="cpu")
    x = explainer.explain(path, landmarks=table["s6/1.pgm"])
    assert x.landmarks.source == "given" and x.part_masks.shape[0] == 7
    names, _ = channel_labels(x.masks[[c.channel for c in x.channels]], x.part_masks)
    assert [c.part for c in x.channels] == names
    # landmarks far off the face: every shown channel lands on no part
    off = explainer.explain(path, landmarks=table["s6/1.pgm"] * 0.2)
    assert any(c.part is not None for c in x.channels)
    assert [c.channel for c in off.channels] == [c.channel for c in x.channels]
    assert sum(c.part is not None for c in off.channels) < sum(c.part is not None
                                                                for c in x.channels)
    assert all(c.label().startswith(f"ch {c.channel} ") for c in x.channels)
