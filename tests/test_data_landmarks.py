"""The committed ORL landmarks (zoo/data/orl_landmarks.npz) and the ORL part masks."""
import numpy as np

from export.part_masks import PART_NAMES
from zoo.data import ORLFaces
from zoo.data.orl import LANDMARKS_FILE, orl_landmark_table


def test_every_orl_image_has_plausible_landmarks():
    table, methods = orl_landmark_table()
    ds = ORLFaces("all")
    assert len(table) == 400 and {ds.key(i) for i in range(400)} == set(table)
    assert set(methods.values()) <= {"hog-up1", "hog-up2", "fixed-box"}
    for i in range(400):
        pts = ds.landmarks(i)
        eyes, brows, mouth, nose_tip = pts[36:48], pts[17:27], pts[48:68], pts[30]
        where = f"{ds.key(i)} ({ds.landmark_method(i)})"
        assert eyes[:, 1].max() < mouth[:, 1].min(), f"{where}: eyes not above mouth"
        assert eyes[:, 1].mean() < nose_tip[1] < mouth[:, 1].mean(), f"{where}: nose misplaced"
        assert brows[:, 1].mean() < eyes[:, 1].mean(), f"{where}: brows not above eyes"
        for group in (eyes, mouth):
            assert (group >= 0).all() and (group[:, 0] < 92).all() and (group[:, 1] < 112).all(), \
                f"{where}: eye/mouth landmark outside the 92x112 image"
        assert pts[39, 0] < pts[42, 0], f"{where}: left/right eyes swapped"


def test_orl_part_masks():
    ds = ORLFaces("heldout")
    masks = ds.part_masks(3, 112)
    assert masks.shape == (len(PART_NAMES), 112, 112) and masks.dtype == bool
    assert all(m.any() for m in masks[1:])  # every face part (hair may be cut off by the frame)
    eyes = masks[PART_NAMES.index("eyes")]
    # the eye landmarks, scaled from 92x112 to 112x112, fall inside the eyes mask
    pts = ds.landmarks(3)[36:48]
    cols = np.round((pts[:, 0] + 0.5) * 112 / 92 - 0.5).astype(int)
    rows = np.round(pts[:, 1]).astype(int)
    assert eyes[rows, cols].all()
    assert ds.part_masks(3, (56, 46)).shape == (7, 56, 46)


def test_landmark_file_loads_without_pickle():
    with np.load(LANDMARKS_FILE, allow_pickle=False) as z:
        assert z["landmarks"].shape == (400, 68, 2)
        assert "dlib" in str(z["provenance"])
