"""Export (ONNX / TorchScript) and the onnxruntime-only runtime.

The trained model is a committed fixture (tests/fixtures/export_tiny, 1.1 MB, made by the
make_fixture.py beside it through the real engine and zoo.evaluate: tiny VGG13+BN, 64 px, 6
epochs on ORL, with its evaluation threshold and real channel -> part table). Training it per
test session took 15-60 s on the shared 2-core machine, most of this file's time budget.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import zoo
from export.images import ImageError, preprocess
from export.model_dir import ModelDirError
from export.verifier import FaceVerifier
from zoo.data.orl import ORLFaces, orl_root
from zoo.data.transforms import face_transform
from zoo.exporting.model_export import export_model
from zoo.exporting.onnx_writer import ExportError
from zoo.metrics.verification import embed as zoo_embed

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "export_tiny"
PART_NAMES = ["hair", "forehead", "cheek", "eyes", "nose", "mouth", "jaw"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(model folder, channel-part table): a copy of the committed trained fixture."""
    folder = tmp_path_factory.mktemp("export_zoo") / "tiny-ecloss"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py"))
    table = json.loads((folder / "channel_parts.json").read_text())
    return folder, table


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    folder, _ = trained
    out = tmp_path_factory.mktemp("export_out")
    lines = []
    result = export_model(folder, out, log=lines.append)
    return out, result, lines


def _ort(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------

def test_export_writes_files_and_reports_parity(exported):
    out, result, lines = exported
    assert sorted(p.name for p in out.iterdir()) == ["detector", "embedding.onnx",
                                                     "featuremap.onnx", "head.onnx", "model.ts"]
    assert sorted(p.name for p in (out / "detector").iterdir()) == [
        "detector.json", "onet.onnx", "pnet.onnx", "rnet.onnx"]
    seen = {(r["file"], r["output"], r["batch"]) for r in result.parity}
    for f, o in [("embedding.onnx", "embeddings"), ("featuremap.onnx", "feature_maps"),
                 ("featuremap.onnx", "heatmaps+masks"), ("model.ts", "embeddings")]:
        assert {(f, o, 1), (f, o, 5)} <= seen
    assert all(r["max_abs_err"] <= r["tol"] for r in result.parity)
    assert any("max abs err" in line and "batch 5" in line for line in lines)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_onnx_matches_pytorch_batch_1_and_5(trained, exported):
    folder, _ = trained
    out, _, _ = exported
    net = zoo.load(folder)
    emb_sess, fm_sess = _ort(out / "embedding.onnx"), _ort(out / "featuremap.onnx")
    ts = torch.jit.load(str(out / "model.ts"))
    for b in (1, 5):
        x = torch.rand(b, 3, 64, 64, generator=torch.Generator().manual_seed(b)) * 2 - 1
        ref = zoo_embed(net, x, flip=False).numpy()  # the default export: one view
        got = emb_sess.run(["embeddings"], {"images": x.numpy()})[0]
        assert got.shape == (b, 512)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        with torch.no_grad():
            np.testing.assert_allclose(ts(x).numpy(), ref, atol=1e-4, rtol=0)
            fmap = net.forward_features(x).numpy()
        f, h, m = fm_sess.run(["feature_maps", "heatmaps", "masks"], {"images": x.numpy()})
        assert f.shape == (b, net.feature_channels, 4, 4) and m.shape == (b, f.shape[1], 64, 64)
        np.testing.assert_allclose(f, fmap, atol=1e-4 * max(1, np.abs(fmap).max()), rtol=0)
        assert (f >= 0).all()  # post-ReLU
        assert m.dtype == np.bool_ and np.array_equal(h > 0, m & (h > 0))
        kept = m.reshape(b, f.shape[1], -1).mean(-1)
        live = f.reshape(b, f.shape[1], -1).max(-1) > 0
        assert np.all(kept[live] >= 0.1 - 1e-9) and np.all(kept[live] < 0.2)


def test_dynamic_batch_axis_and_checker(exported):
    out, _, _ = exported
    for name in ("embedding.onnx", "featuremap.onnx"):
        model = onnx.load(str(out / name))
        onnx.checker.check_model(model, full_check=True)
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert model.graph.input[0].name == "images"
        assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 64, 64]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_metadata_read_back(trained, exported):
    folder, table = trained
    out, _, _ = exported
    cfg = json.loads((folder / "config.json").read_text())
    for name in ("embedding.onnx", "featuremap.onnx"):
        meta = {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}
        assert meta["model_name"] == "tiny-ecloss"
        assert meta["input_size"] == "64" and meta["channel_order"] == "RGB"
        assert json.loads(meta["mean"]) == [0.5] * 3 and json.loads(meta["std"]) == [0.5] * 3
        # the fixture was trained before one-view thresholds: the flip-TTA one, said so
        assert float(meta["threshold"]) == pytest.approx(cfg["metrics"]["orl"]["threshold"])
        assert "chosen with flip TTA" in meta["threshold_source"]
        # a config written before a field existed is read with that field's default
        assert json.loads(meta["ecloss"]) == zoo.config.load_config(folder / "config.json")[
            "ecloss"]
        assert {k: v for k, v in json.loads(meta["ecloss"]).items() if k in cfg["ecloss"]} == \
            cfg["ecloss"]
        assert json.loads(meta["channel_parts"]) == table
        assert meta["zoo_version"] == cfg["zoo_version"] == zoo.__version__
        assert meta["flip_tta"] == "false" and meta["top_fraction"] == "0.1"
        assert int(meta["feature_channels"]) == len(table["channel_part"])
    extra = {"metadata.json": ""}
    torch.jit.load(str(out / "model.ts"), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["threshold"] == meta["threshold"]
    # the files of one export share its id (the runtime refuses a folder mixing two exports)
    ids = {name: {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}["export_id"]
           for name in ("embedding.onnx", "featuremap.onnx")}
    assert len(set(ids.values())) == 1
    assert json.loads(extra["metadata.json"])["export_id"] == ids["embedding.onnx"]
    # the runtime reads the same values
    v = FaceVerifier(out, device="cpu")
    assert v.threshold == pytest.approx(cfg["metrics"]["orl"]["threshold"])
    assert v.input_size == 64 and v.providers == ["CPUExecutionProvider"]


def test_parity_failure_is_loud_and_writes_nothing(trained, tmp_path):
    folder, _ = trained
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="above the tolerance"):
        export_model(folder, out, tolerance=1e-30, featuremap=False, torchscript=False,
                     log=None)
    assert list(out.iterdir()) == []  # no file that looks valid, no temp file left


def test_cli_by_name_untrained_model_has_no_threshold(tmp_path):
    home = tmp_path / "home"
    zoo.save(zoo.create("vgg13-ecloss", width=1 / 16, input_size=32, embedding_dim=16,
                        name="tiny-untrained"), root=home)
    env = dict(os.environ, ZOO_HOME=str(home), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "zoo.exporting", "tiny-untrained", "--out",
                        str(tmp_path / "out"), "--no-featuremap", "--no-torchscript"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "parity embedding.onnx [embeddings] batch 1: max abs err" in r.stdout
    assert "no verification threshold" in r.stdout
    v = FaceVerifier(tmp_path / "out")
    assert v.threshold is None and "threshold" not in v.metadata
    img = np.zeros((40, 30), np.uint8)
    with pytest.raises(ValueError, match="no verification threshold"):
        v.verify(img, img)
    assert v.verify(img, img, threshold=0.5).same  # identical images: similarity 1
    # an unknown model fails with the registry's message, exit status 1
    r = subprocess.run([sys.executable, "-m", "zoo.exporting", "no-such-model", "--out",
                        str(tmp_path / "x")], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 1 and "unknown model 'no-such-model'" in r.stderr


def test_python_m_export_says_where_the_commands_are(tmp_path):
    """`python -m export` is the runtime package, not the exporter: it names the commands (the
    torch-side export, the runtime CLI, the web page) and exits 2, with or without arguments."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args in ([], ["tiny-untrained", "--out", str(tmp_path / "out")]):
        r = subprocess.run([sys.executable, "-m", "export", *args], capture_output=True,
                           text=True, env=env, cwd=ROOT, timeout=60)
        assert r.returncode == 2 and r.stdout == ""
        for command in ("python -m zoo.exporting MODEL --out DIR",
                        "python -m export.runtime verify", "python -m export.runtime explain",
                        "python -m export.app"):
            assert command in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_bad_parts_table_names_the_file(trained, tmp_path):
    folder, _ = trained
    bad = tmp_path / "parts.json"
    bad.write_text(json.dumps({"part_names": PART_NAMES, "channel_part": [0, 1]}))
    with pytest.raises(ValueError, match=r"parts\.json: channel_part has 2 entries"):
        export_model(folder, tmp_path / "out", parts=bad, log=None)


# ----------------------------------------------------------------------------------------------
# runtime (torch may be loaded in this process: the no-torch proof is the subprocess test)
# ----------------------------------------------------------------------------------------------

def test_preprocess_equals_training_transform():
    """The runtime's numpy/Pillow preprocessing is the torchvision training transform."""
    tf = face_transform(64)
    rng = np.random.default_rng(0)
    imgs = [Image.open(orl_root() / "s1" / "1.pgm"),                          # grey PGM
            Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA"),
            Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8), "RGB")]
    got = preprocess(imgs, 64)
    ref = torch.stack([tf(im) for im in imgs]).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)


def test_accepts_paths_pil_and_arrays(exported):
    out, _, _ = exported
    v = FaceVerifier(out)
    path = orl_root() / "s2" / "3.pgm"
    grey = np.asarray(Image.open(path))
    forms = [path, str(path), Image.open(path), grey, grey[..., None],
             np.repeat(grey[..., None], 3, axis=2), grey.astype(np.float32) / 255,
             np.concatenate([np.repeat(grey[..., None], 3, 2),
                             np.full(grey.shape + (1,), 7, np.uint8)], axis=2)]  # RGBA
    e = v.embed(forms)
    assert e.shape == (len(forms), 512)
    np.testing.assert_allclose(e, np.repeat(e[:1], len(forms), 0), atol=1e-5)
    # a stack of arrays is a batch; batching does not change embeddings
    stack = np.stack([grey, grey[::-1]])
    np.testing.assert_allclose(v.embed(stack, batch_size=1), v.embed(list(stack)), atol=1e-5)


def test_bad_inputs_are_rejected_clearly(exported, tmp_path):
    out, _, _ = exported
    v = FaceVerifier(out)
    fake = tmp_path / "face.jpg"
    fake.write_text("this is not a jpeg")
    with pytest.raises(ImageError, match=r"face\.jpg: not an image file"):
        v.embed(fake)
    trunc = tmp_path / "trunc.png"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(trunc)
    trunc.write_bytes(trunc.read_bytes()[:40])
    with pytest.raises(ImageError, match=r"trunc\.png"):
        v.embed(trunc)
    with pytest.raises(FileNotFoundError, match=r"missing\.png: image file not found"):
        v.embed(tmp_path / "missing.png")
    with pytest.raises(ImageError, match=r"ndarray #0: .* looks channels-first"):
        v.embed([np.zeros((3, 64, 64), np.uint8)])  # a bare (3, H, W) array is 3 grey images
    with pytest.raises(ImageError, match=r"#1: float arrays must hold values in \[0, 1\]"):
        v.embed([np.zeros((16, 16), np.float32), np.full((16, 16), 2.0)])
    with pytest.raises(ImageError, match="dtype int64"):
        v.embed(np.zeros((8, 8), np.int64))
    with pytest.raises(ModelDirError, match="model folder not found"):
        FaceVerifier(tmp_path / "nowhere")
    with pytest.raises(ModelDirError, match=r"embedding\.onnx: missing"):
        FaceVerifier(tmp_path)
    (tmp_path / "embedding.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelDirError, match="onnxruntime cannot load"):
        FaceVerifier(tmp_path)
    with pytest.raises(ValueError, match="threshold must be a cosine"):
        FaceVerifier(out, threshold=3.0)


def test_crop_uses_the_exports_detector(exported):
    from export.crop import crop_face
    out, _, _ = exported
    face = crop_face(orl_root() / "s1" / "1.pgm", detector=out)
    assert face.mode == "RGB" and abs(face.width - face.height) <= 1 and face.width > 60
    with pytest.raises(ImageError, match="no face"):
        crop_face(np.full((100, 100), 128, np.uint8), detector=out)


# ----------------------------------------------------------------------------------------------
# the runtime in a process where torch cannot be imported
# ----------------------------------------------------------------------------------------------

NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class _NoTorch(importlib.abc.MetaPathFinder):
        BLOCKED = ("torch", "torchvision", "facenet_pytorch", "zoo")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None
    sys.meta_path.insert(0, _NoTorch())
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch imported despite the blocker")
""")

RUNTIME_CHECK = textwrap.dedent("""
    import json, runpy, sys
    from pathlib import Path
    model, orl, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    ids = json.loads(sys.argv[4])
    from export.explainer import FaceExplainer, overlay_size
    from export.verifier import FaceVerifier
    v = FaceVerifier(model)
    same = [v.verify(orl / f"s{i}" / "1.pgm", orl / f"s{i}" / f"{n}.pgm").similarity
            for i in ids for n in (2, 3)]
    diff = [v.verify(orl / f"s{a}" / "1.pgm", orl / f"s{b}" / "2.pgm").similarity
            for a, b in zip(ids, ids[1:] + ids[:1])]
    r = v.verify(orl / f"s{ids[0]}" / "1.pgm", orl / f"s{ids[0]}" / "2.pgm")
    x = FaceExplainer(model).explain(orl / f"s{ids[0]}" / "1.pgm", out=out / "heat.png")
    ch = [[c.channel, c.table_part, c.part, c.iou, x.landmarks.source] for c in x.channels]
    from export.face_parts import channel_labels
    labels = channel_labels(x.masks[[c.channel for c in x.channels]], x.part_masks)[0]
    ch = [row + [want] for row, want in zip(ch, labels)]
    sys.argv = ["x", "verify", str(orl / f"s{ids[0]}" / "1.pgm"),
                str(orl / f"s{ids[1]}" / "1.pgm"), "--model", model, "--json"]
    try:
        runpy.run_module("export.runtime", run_name="__main__")
    except SystemExit as e:
        assert e.code == 0, e.code
    sys.argv = ["x", "explain", str(orl / f"s{ids[0]}" / "2.pgm"), "--model", model,
                "--out", str(out / "cli.png"), "--top-k", "3"]
    try:
        runpy.run_module("export.runtime", run_name="__main__")
    except SystemExit as e:
        assert e.code == 0, e.code
    print("RESULT " + json.dumps({
        "torch_loaded": "torch" in sys.modules, "same": same, "diff": diff,
        "verify": [r.similarity, r.threshold, r.same], "threshold": v.threshold,
        "heat_shape": list(x.heatmaps.shape), "mask_frac": float(x.masks.mean()),
        "channels": ch, "overlay": list(x.overlay.size), "documented": list(overlay_size()),
        "providers": v.providers}))
""")


def test_runtime_without_torch(trained, exported, tmp_path):
    folder, table = trained
    out, _, _ = exported
    heldout = ORLFaces(split="heldout").identities  # identities the model never trained on
    ids = [int(i) for i in heldout[:6]]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    prelude = subprocess.run([sys.executable, "-c", NO_TORCH + "\nprint('blocked')"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert prelude.returncode == 0 and prelude.stdout.strip() == "blocked", prelude.stderr
    r = subprocess.run([sys.executable, "-c", NO_TORCH + RUNTIME_CHECK, str(out),
                        str(orl_root()), str(tmp_path), json.dumps(ids)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # no provider error/warning spam on a CPU-only machine (nor anything else on stderr)
    assert "onnxruntime" not in r.stderr and "CUDA" not in r.stderr, r.stderr
    res = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert res["torch_loaded"] is False
    assert np.mean(res["same"]) > np.mean(res["diff"]) + 0.1, res
    sim, th, same = res["verify"]
    assert th == pytest.approx(res["threshold"]) and same == (sim >= th)
    assert res["heat_shape"] == [64, 64, 64]
    assert 0.08 < res["mask_frac"] < 0.2
    assert res["overlay"] == res["documented"] == [480, 540]
    for c, table_part, part, iou, source, on_this_face in res["channels"]:
        p = table["channel_part"][c]
        assert table_part == (PART_NAMES[p] if p >= 0 else None)   # the held-out average
        assert part == on_this_face and 0 <= iou <= 1             # the part on this face
        assert source == "detected"                                # the export's own MTCNN
    with Image.open(tmp_path / "heat.png") as im:
        assert im.format == "PNG" and im.size == (480, 540)
    with Image.open(tmp_path / "cli.png") as im:
        assert im.size == (320, 360)  # top-k 3: 2 x 2 grid
    assert '"similarity"' in r.stdout and "wrote " in r.stdout


def test_runtime_cli_errors(exported, tmp_path):
    out, _, _ = exported
    bad = tmp_path / "notes.png"
    bad.write_text("not a png")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "export.runtime", "verify", str(bad),
                        str(orl_root() / "s1" / "1.pgm"), "--model", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and f"{bad}: not an image file" in r.stderr
    r = subprocess.run([sys.executable, "-m", "export.runtime", "explain",
                        str(orl_root() / "s1" / "1.pgm"), "--model", str(tmp_path),
                        "--out", str(tmp_path / "h.png")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "featuremap.onnx: missing" in r.stderr


def test_threshold_follows_the_exports_protocol():
    """A one-view export (the default) takes the report's one_view threshold, a flip-TTA export
    the flip one; without a one_view report the flip one is used and the source says so."""
    from export.metadata import build_metadata
    cfg = json.loads((FIXTURE / "config.json").read_text())
    rep = dict(cfg["metrics"]["orl"], threshold=0.41,
               one_view={"accuracy": 0.8, "std": 0.03, "auc": 0.9, "threshold": 0.37})
    with_one = dict(cfg, metrics={"orl": rep})
    one = build_metadata(with_one, flip=False, parts=None)
    both = build_metadata(with_one, flip=True, parts=None)
    assert float(one["threshold"]) == 0.37 and float(both["threshold"]) == 0.41
    assert one["threshold_source"].startswith("metrics.orl.one_view.threshold")
    assert "one-view embeddings" in one["threshold_source"]
    assert "flip-TTA embeddings" in both["threshold_source"]
    assert "chosen with" not in one["threshold_source"] + both["threshold_source"]
    assert json.loads(one["metrics"])["orl"]["one_view"]["threshold"] == 0.37
    old = dict(cfg, metrics={"orl": dict(rep, one_view=None)})
    fallback = build_metadata(old, flip=False, parts=None)
    assert float(fallback["threshold"]) == 0.41
    assert "chosen with flip TTA" in fallback["threshold_source"]


def test_validation_reports_one_view_from_the_same_passes():
    """zoo.validation's flip-TTA report carries the one-view protocol's accuracy and threshold,
    equal to a separate one-view evaluation of the same pairs."""
    from zoo.validation import verification_on
    net = zoo.load(FIXTURE)
    size = net.zoo_config["arch"]["input_size"]
    both = verification_on(net, "orl", size, "cpu", flip=True, orl_num_train=34)
    one = verification_on(net, "orl", size, "cpu", flip=False, orl_num_train=34)
    assert "one_view" not in one
    for k in ("accuracy", "auc", "threshold"):
        assert both["one_view"][k] == pytest.approx(one[k], abs=1e-9)
    assert both["threshold"] != pytest.approx(one["threshold"], abs=1e-9)
