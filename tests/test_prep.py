"""zoo.prep: MTCNN crops of a real face; no-face and corrupt images are reported, not fatal."""
import json

import numpy as np
import pytest
from PIL import Image

from zoo.data import orl_root
from zoo.prep import crop_faces, main as prep_main, square_crop_box


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    (root / "s1").mkdir()
    (root / "other").mkdir()
    # a real face: ORL s1/1 upscaled 2x (MTCNN finds it with p > 0.99)
    Image.open(orl_root() / "s1" / "1.pgm").resize((184, 224), Image.BILINEAR).save(
        root / "s1" / "face.png")
    grad = np.tile(np.linspace(0, 255, 160).astype(np.uint8), (160, 1))
    Image.fromarray(grad).convert("RGB").save(root / "other" / "no_face.png")
    (root / "other" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "other" / "readme.txt").write_text("not an image: ignored, not reported")
    return root


def test_one_crop_two_reported(src, tmp_path):
    rep = crop_faces(src, tmp_path / "out", size=112, device="cpu", progress=False)
    assert (rep.num_images, rep.num_cropped, rep.num_reported) == (3, 1, 2)
    assert rep.num_no_face == 1 and rep.num_undecodable == 1
    reasons = {f["src"]: f["reason"] for f in rep.failures}
    assert reasons["other/no_face.png"] == "no face detected"
    assert reasons["other/corrupt.jpg"].startswith("undecodable") and "corrupt.jpg" in reasons[
        "other/corrupt.jpg"]
    crop = Image.open(tmp_path / "out" / "s1" / "face.jpg")
    assert crop.size == (112, 112) and crop.mode == "RGB"
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 1
    m = json.loads(lines[0])
    assert m["src"] == "s1/face.png" and m["dst"] == "s1/face.jpg" and m["prob"] > 0.95
    x1, y1, x2, y2 = m["box"]
    assert 0 <= x1 < x2 <= 184 + 20 and 0 <= y1 < y2 <= 224 + 20
    eyes, nose = np.array(m["landmarks"][:2]), m["landmarks"][2]
    mouth = np.array(m["landmarks"][3:])
    assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()  # a face, upright
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["num_cropped"] == 1 and len(saved["failures"]) == 2


def test_cli_and_guards(src, tmp_path, capsys):
    assert prep_main([str(src), str(tmp_path / "o"), "--size", "64", "--device", "cpu",
                      "--no-progress", "--ext", ".png"]) == 0
    assert "1 cropped, 1 without a face, 1 undecodable" in capsys.readouterr().out
    assert Image.open(tmp_path / "o" / "s1" / "face.png").size == (64, 64)
    with pytest.raises(ValueError, match="must not lie inside"):
        crop_faces(src, src / "crops", device="cpu", progress=False)


def test_square_crop_box():
    assert square_crop_box((10, 20, 30, 60), 0.5) == (-10.0, 10.0, 50.0, 70.0)


def test_a_missing_folder_or_a_single_file_is_one_line(tmp_path, capsys):
    """issue 23: no traceback for a user error."""
    assert prep_main([str(tmp_path / "nowhere"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"zoo.prep: error: {tmp_path / 'nowhere'}: no such folder"]
    photo = tmp_path / "one.jpg"
    Image.new("RGB", (64, 64)).save(photo)
    assert prep_main([str(photo), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a single file; zoo.prep crops every photo of a folder" in err[0]
