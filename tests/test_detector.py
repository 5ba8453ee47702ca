"""The runtime's face detector (export.detector: MTCNN in numpy + onnxruntime) against
facenet-pytorch's MTCNN, the detector it re-implements, on real faces.

Measured when this was written (400 ORL faces, the photos below, the 5-face composite): the
same faces everywhere, box corners and points within 1.3e-4 px, scores within 1.2e-7. The
tolerances below (IoU >= 0.99, points within 2% of the box side) leave room for another
onnxruntime / torch build's rounding while still catching a changed stage: a different tie-break
in the last NMS alone moved one ORL box by 2.6 px (IoU 0.94).
"""
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from export import crop as export_crop
from export.detector import (
    DETECTOR_DIR,
    DetectorError,
    FaceDetector,
    area_resample,
    integral_image,
    nms,
)
from zoo.data.orl import orl_root
from zoo.exporting.detector import export_detector, main as detector_main

ROOT = Path(__file__).resolve().parents[1]
facenet_pytorch = pytest.importorskip("facenet_pytorch")

MIN_IOU = 0.99
MAX_POINT_ERROR = 0.02  # of the box side
MAX_SCORE_ERROR = 1e-3


@pytest.fixture(scope="session")
def detector_dir(tmp_path_factory):
    return export_detector(tmp_path_factory.mktemp("detector"), log=None)


@pytest.fixture(scope="session")
def detector(detector_dir):
    return FaceDetector(detector_dir, threads=1)


@pytest.fixture(scope="session")
def reference():
    torch.set_num_threads(1)
    return facenet_pytorch.MTCNN(keep_all=True, device="cpu")


def _orl(name):
    return Image.open(orl_root() / name).convert("RGB")


def _grace_hopper():
    import matplotlib.cbook
    return Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _group():
    """Five ORL faces of different people at different sizes on one canvas."""
    canvas = Image.new("RGB", (640, 420), (90, 110, 100))
    for name, scale, xy in [("s1/1.pgm", 1.0, (10, 20)), ("s10/8.pgm", 1.6, (130, 40)),
                            ("s20/6.pgm", 0.7, (330, 30)), ("s30/4.pgm", 2.2, (400, 150)),
                            ("s39/2.pgm", 1.2, (40, 250))]:
        canvas.paste(_orl(name).resize((int(92 * scale), int(112 * scale))), xy)
    return canvas


def _images():
    """(name, RGB image, expected face count)."""
    out = [(f"orl/{n}", _orl(n), 1)
           for n in ("s1/1.pgm", "s7/3.pgm", "s10/5.pgm", "s25/9.pgm", "s8/10.pgm")]
    # s8/10: O-Net gives two boxes the very same score; which one stays is the tie-break.
    out.append(("orl/s10/target.jpg", Image.open(orl_root() / "s10" / "target.jpg"), 1))
    gh = _grace_hopper()
    out += [("grace_hopper", gh, 1), ("grace_hopper rotated 20", gh.rotate(20, expand=True), 1),
            ("grace_hopper 900 px", gh.resize((900, 1054)), 1), ("group", _group(), 5)]
    rng = np.random.default_rng(0)
    out.append(("noise", Image.fromarray(rng.integers(0, 256, (300, 400, 3), np.uint8)), 0))
    gradio = importlib.util.find_spec("gradio")  # the app extra: a cartoon face, 910 x 512
    if gradio is not None:
        groot = Path(gradio.submodule_search_locations[0]) / "media_assets/images/groot.jpeg"
        if groot.is_file():
            out.append(("groot", Image.open(groot).convert("RGB"), 1))
    return out


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ----------------------------------------------------------------------------------------------
# agreement with facenet-pytorch
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,image,expected", _images(), ids=[i[0] for i in _images()])
def test_same_faces_as_facenet_pytorch(detector, reference, name, image, expected):
    faces = detector.detect(image)
    boxes, probs, points = reference.detect(image, landmarks=True)
    ref = [] if boxes is None else list(zip(boxes, probs, points))
    assert len(faces) == len(ref) == expected, (name, len(faces), len(ref))
    unmatched = list(range(len(ref)))
    for face in faces:
        k = max(unmatched, key=lambda j: _iou(face.box, ref[j][0]))
        unmatched.remove(k)
        box, prob, pts = ref[k]
        side = face.box[2] - face.box[0]
        assert _iou(face.box, box) >= MIN_IOU, (name, face.box, box)
        assert np.abs(face.points - pts).max() <= MAX_POINT_ERROR * side, (name, face.points,
                                                                           pts)
        assert abs(face.score - prob) <= MAX_SCORE_ERROR
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_results_have_the_documented_types(detector):
    face = detector.detect(orl_root() / "s1" / "1.pgm")[0]
    assert face.box.shape == (4,) and face.box.dtype == np.float64
    assert face.points.shape == (5, 2) and face.points.dtype == np.float64
    assert isinstance(face.score, float) and 0.7 < face.score <= 1
    # facenet-pytorch's order: left eye, right eye (image left/right), nose, mouth corners
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.points
    assert lx < nx < rx and mlx < mrx and max(ly, ry) < ny < min(mly, mry)


def test_blank_image_has_no_face(detector):
    assert detector.detect(np.full((120, 160), 128, np.uint8)) == []


def test_image_smaller_than_the_smallest_face_has_no_face(detector):
    # 16 px (the decoder's minimum) with min_face_size 40: no pyramid level (facenet raises)
    small = FaceDetector(detector.folder, min_face_size=40)
    assert small.detect(np.full((16, 16, 3), 200, np.uint8)) == []


# ----------------------------------------------------------------------------------------------
# the pieces
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("region,size", [((0, 97, 0, 131), (58, 79)),    # down, not an integer
                                         ((0, 97, 0, 131), (97, 131)),   # same size
                                         ((5, 19, 7, 23), (24, 24)),     # up (crop of a box)
                                         ((40, 97, 60, 131), (48, 48))])
def test_area_resample_is_torch_interpolate_area(region, size):
    rgb = np.random.default_rng(1).integers(0, 256, (97, 131, 3), np.uint8)
    top, bottom, left, right = region
    ours = area_resample(integral_image(rgb), top, bottom, left, right, *size)
    x = torch.from_numpy(rgb[top:bottom, left:right]).permute(2, 0, 1)[None].float()
    ref = torch.nn.functional.interpolate(x, size=size, mode="area")[0].permute(1, 2, 0)
    assert ours.shape == (*size, 3) and ours.dtype == np.float32
    assert np.abs(ours - ref.numpy()).max() < 1e-3  # float32 sums of up to 255 x 4 px


def test_nms_matches_torchvision_and_facenet_min_mode():
    from facenet_pytorch.models.utils.detect_face import nms_numpy
    from torchvision.ops import nms as tv_nms
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 200, (300, 2)).astype(np.float32)
    wh = rng.uniform(10, 60, (300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.choice(np.linspace(0.5, 1, 40), 300).astype(np.float32)  # many equal scores
    for thr in (0.3, 0.5, 0.7):
        ref = tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, thr), ref)
        np.testing.assert_array_equal(nms(boxes, scores, thr, mode="min"),
                                      nms_numpy(boxes, scores, thr, "Min"))


# ----------------------------------------------------------------------------------------------
# the folder and its errors
# ----------------------------------------------------------------------------------------------

def test_cli_writes_the_files_and_their_provenance(tmp_path, capsys):
    assert detector_main(["--out", str(tmp_path / "det")]) == 0
    assert "wrote" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "det").iterdir())
    assert names == ["detector.json", "onet.onnx", "pnet.onnx", "rnet.onnx"]
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert meta["source"]["version"] == "2.5.3" and meta["licence"].startswith("MIT")
    assert "Multi-task Cascaded" in meta["paper"]
    assert meta["defaults"] == {"min_face_size": 20, "thresholds": [0.6, 0.7, 0.7],
                                "factor": 0.709}
    assert set(meta["files"]) == {"pnet.onnx", "rnet.onnx", "onet.onnx"}


def test_model_folder_with_detector_inside(detector_dir, tmp_path):
    shutil.copytree(detector_dir, tmp_path / DETECTOR_DIR)
    (tmp_path / "embedding.onnx").write_bytes(b"")  # a model folder around it
    assert FaceDetector(tmp_path).folder == tmp_path / DETECTOR_DIR


def test_missing_and_corrupt_folders_name_the_file(detector_dir, tmp_path):
    with pytest.raises(DetectorError, match="nowhere: detector folder not found"):
        FaceDetector(tmp_path / "nowhere")
    model = tmp_path / "model"
    model.mkdir()
    (model / "embedding.onnx").write_bytes(b"")
    with pytest.raises(DetectorError, match=r"model/detector: missing; this model folder was "
                                            r"exported without the face detector"):
        FaceDetector(model)
    partial = tmp_path / "partial"
    shutil.copytree(detector_dir, partial)
    (partial / "onet.onnx").unlink()
    with pytest.raises(DetectorError, match=r"partial/onet\.onnx: missing"):
        FaceDetector(partial)
    changed = tmp_path / "changed"
    shutil.copytree(detector_dir, changed)
    (changed / "rnet.onnx").write_bytes(b"garbage")
    with pytest.raises(DetectorError, match=r"changed/rnet\.onnx: sha256 differs from the one "
                                            r"in .*detector\.json"):
        FaceDetector(changed)
    (changed / "detector.json").unlink()  # without the description: onnxruntime's refusal
    with pytest.raises(DetectorError, match=r"changed/rnet\.onnx: onnxruntime cannot load"):
        FaceDetector(changed)
    swapped = tmp_path / "swapped"
    shutil.copytree(detector_dir, swapped)
    (swapped / "detector.json").unlink()
    shutil.copy(detector_dir / "onet.onnx", swapped / "rnet.onnx")
    with pytest.raises(DetectorError, match=r"swapped/rnet\.onnx: not an MTCNN RNET export"):
        FaceDetector(swapped)


def test_bad_settings_are_refused(detector_dir):
    with pytest.raises(ValueError, match="thresholds must be 3"):
        FaceDetector(detector_dir, thresholds=(0.6, 0.7))
    with pytest.raises(ValueError, match="factor"):
        FaceDetector(detector_dir, factor=1.0)
    with pytest.raises(ValueError, match="min_face_size"):
        FaceDetector(detector_dir, min_face_size=0)


# ----------------------------------------------------------------------------------------------
# the crop (--crop) and the runtime without torch
# ----------------------------------------------------------------------------------------------

def test_crop_takes_the_largest_face_and_says_how_many(detector, reference):
    group = _group()
    found = export_crop.find_face(group, detector=detector)
    assert found.num_faces == 5
    boxes, _ = reference.detect(group)  # facenet-pytorch: the largest face first
    assert _iou(found.face.box, boxes[0]) >= MIN_IOU
    assert found.crop_box == tuple(int(round(v)) for v in
                                   export_crop.square_crop_box(found.face.box, 0.2))
    assert found.image.size == (found.crop_box[2] - found.crop_box[0],
                                found.crop_box[3] - found.crop_box[1])
    with pytest.raises(ValueError, match="needs the detector"):
        export_crop.crop_face(group)


def test_zoo_prep_uses_the_runtimes_crop_rule():
    import zoo.prep
    assert zoo.prep.square_crop_box is export_crop.square_crop_box
    assert zoo.prep.largest_face is export_crop.largest_face
    assert export_crop.largest_face(np.array([[0, 0, 10, 10], [5, 5, 30, 20], [0, 0, 5, 60]])) == 1


NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class _NoTorch(importlib.abc.MetaPathFinder):
        BLOCKED = ("torch", "torchvision", "facenet_pytorch", "zoo", "scipy")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None
    sys.meta_path.insert(0, _NoTorch())
""")

DETECT_WITHOUT_TORCH = textwrap.dedent("""
    import sys
    from export.crop import find_face
    from export.detector import FaceDetector
    faces = FaceDetector(sys.argv[1], threads=1).detect(sys.argv[2])
    crop = find_face(sys.argv[2], detector=sys.argv[1])
    heavy = sorted(m for m in sys.modules
                   if m.split(".")[0] in ("torch", "torchvision", "facenet_pytorch", "zoo",
                                          "scipy"))
    print(len(faces), crop.num_faces, crop.image.size[0] > 60, heavy)
""")


def test_detection_runs_without_torch(detector_dir):
    r = subprocess.run([sys.executable, "-c", NO_TORCH + DETECT_WITHOUT_TORCH, str(detector_dir),
                        str(orl_root() / "s1" / "1.pgm")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1", "True", "[]"], r.stdout
