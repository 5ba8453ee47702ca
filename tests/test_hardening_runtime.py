"""Issue 12, items 13-16 (and the runtime side of item 1): the onnxruntime runtime refuses bad
model folders when they are opened, bad thresholds and batch sizes, and bad output names, each
with an error that names the file; its CLI exits 2 with one line instead of a traceback.

The model folders here are tiny hand-built ONNX graphs with the exporter's names, shapes and
metadata (no torch, no training): the checks under test look only at those."""
import json
import os
import struct
import subprocess
import sys
import textwrap
import uuid
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from export import runtime
from export.explainer import FaceExplainer, overlay_size
from export.metadata import build_metadata
from export.model_dir import ModelDirError, onnx_metadata
from export.verifier import FaceVerifier
from zoo.data import orl_root

ROOT = Path(__file__).resolve().parents[1]
S = 32          # input size of the hand-built models
FACE_A = orl_root() / "s1" / "1.pgm"
FACE_B = orl_root() / "s2" / "1.pgm"


def _meta(size=S, **over):
    meta = {"format_version": "1", "export_id": "e1", "model_name": "hand-made",
            "input_size": str(size), "mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]",
            "channel_order": "RGB", "embedding_dim": "3", "feature_size": str(size // 16),
            "feature_channels": "3", "threshold": "0.5"}
    meta.update(over)
    return {k: v for k, v in meta.items() if v is not None}


def _save(graph, path, meta):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _images_input(size):
    return helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])


def embedding_graph(size=S):
    """images -> mean colour -> L2-normalised 3-d 'embeddings' (the exporter's names)."""
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"], axis=1),
             helper.make_node("LpNormalization", ["f"], ["embeddings"], axis=1, p=2)]
    out = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", 3])
    return helper.make_graph(nodes, "embedding", [_images_input(size)], [out])


def featuremap_graph(size=S):
    """images -> 'feature_maps' (B, 3, S/16, S/16), 'heatmaps' (B, 3, S, S), 'masks' bool."""
    n = size // 16
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [helper.make_node("AveragePool", ["images"], ["p"], kernel_shape=[16, 16],
                              strides=[16, 16]),
             helper.make_node("Relu", ["p"], ["feature_maps"]),
             helper.make_node("Relu", ["images"], ["heatmaps"]),
             helper.make_node("Greater", ["images", "zero"], ["masks"])]
    outs = [helper.make_tensor_value_info("feature_maps", TensorProto.FLOAT, ["batch", 3, n, n]),
            helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["batch", 3, size, size]),
            helper.make_tensor_value_info("masks", TensorProto.BOOL, ["batch", 3, size, size])]
    return helper.make_graph(nodes, "featuremap", [_images_input(size)], outs, initializer=[zero])


def make_model_dir(folder, emb_meta=None, fm_meta=None, emb_graph=None, fm_graph=None):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _save(emb_graph or embedding_graph(), folder / "embedding.onnx", emb_meta or _meta())
    _save(fm_graph or featuremap_graph(), folder / "featuremap.onnx", fm_meta or _meta())
    return folder


@pytest.fixture()
def model(tmp_path):
    return make_model_dir(tmp_path / "model")


def _cli(*args, prelude=""):
    """python -m export.runtime in a subprocess: (returncode, stdout, stderr)."""
    code = prelude + "\nimport sys\nfrom export.runtime import main\nsys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                       text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       timeout=120)
    return r.returncode, r.stdout, r.stderr


def test_hand_built_model_works(model, tmp_path):
    v = FaceVerifier(model, device="cpu")
    assert v.threshold == 0.5 and v.input_size == S
    assert v.verify(FACE_A, FACE_A).same
    x = FaceExplainer(model, device="cpu").explain(FACE_A, top_k=2, out=tmp_path / "h.png")
    assert x.heatmaps.shape == (3, S, S) and x.feature_maps.shape == (3, 2, 2)


# ----------------------------------------------------------------------------------------------
# 1. a decompression bomb through the runtime CLI
# ----------------------------------------------------------------------------------------------

def _bomb_png(width=20000, height=20000) -> bytes:
    """An 85-byte PNG whose header claims width x height pixels (as in the issue)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                                0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_cli_verify_reports_a_bomb_in_one_line(model, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bomb_png())
    rc, out, err = _cli("verify", bomb, FACE_A, "--model", model, "--device", "cpu")
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith(f"error: {bomb}: refused as a possible "
                                                   "decompression bomb"), err


# ----------------------------------------------------------------------------------------------
# 13. --crop without torch
# ----------------------------------------------------------------------------------------------

NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class _NoTorch(importlib.abc.MetaPathFinder):
        BLOCKED = ("torch", "torchvision", "facenet_pytorch", "zoo")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"No module named {name!r}")
            return None
    sys.meta_path.insert(0, _NoTorch())
""")


@pytest.mark.parametrize("cmd", ["verify", "explain"])
def test_crop_without_torch_prints_the_documented_line(model, tmp_path, cmd):
    args = ([cmd, FACE_A, FACE_B] if cmd == "verify" else
            [cmd, FACE_A, "--out", tmp_path / "h.png"])
    rc, out, err = _cli(*args, "--model", model, "--device", "cpu", "--crop", prelude=NO_TORCH)
    assert rc == 2, err
    assert err.count("\n") == 1, err   # one line, no traceback
    # the crop runs without torch (export.detector); this folder has no detector/: say so
    assert err.startswith("error: ") and "detector: missing" in err, err


# ----------------------------------------------------------------------------------------------
# 14. model folders are validated when opened
# ----------------------------------------------------------------------------------------------

def test_swapped_files_are_refused_naming_the_file(tmp_path):
    folder = make_model_dir(tmp_path / "m", emb_graph=featuremap_graph(),
                            fm_graph=embedding_graph())
    with pytest.raises(ModelDirError, match=r"embedding\.onnx: graph outputs \['feature_maps', "
                                            r"'heatmaps', 'masks'\], expected \['embeddings'\] "
                                            r"\(these are the outputs of featuremap\.onnx"):
        FaceVerifier(folder, device="cpu")
    with pytest.raises(ModelDirError, match=r"featuremap\.onnx: graph outputs \['embeddings'\]"):
        FaceExplainer(folder, device="cpu")


@pytest.mark.parametrize("key,value,which", [
    ("input_size", "48", "embedding"), ("input_size", "48", "featuremap"),
    ("embedding_dim", "512", "embedding"), ("feature_channels", "64", "featuremap"),
    ("feature_size", "7", "featuremap")])
def test_metadata_disagreeing_with_the_graph_is_refused(tmp_path, key, value, which):
    bad = _meta(**{key: value})
    arg = {"embedding": "emb_meta", "featuremap": "fm_meta"}[which]
    folder = make_model_dir(tmp_path / "m", **{arg: bad})
    cls = FaceVerifier if which == "embedding" else FaceExplainer
    with pytest.raises(ModelDirError, match=rf"{which}\.onnx: (input|output) '\w+' has shape "
                                            r".* but the metadata .* says"):
        cls(folder, device="cpu")


@pytest.mark.parametrize("key,value", [("input_size", "abc"), ("input_size", "0"),
                                       ("mean", "[0.5, 0.5]"), ("std", "[0.5, 0, 0.5]"),
                                       ("std", "not json"), ("channel_order", "GBR")])
def test_bad_metadata_values_name_the_file(tmp_path, key, value):
    folder = make_model_dir(tmp_path / "m", emb_meta=_meta(**{key: value}))
    with pytest.raises(ModelDirError, match=rf"embedding\.onnx: metadata {key}"):
        FaceVerifier(folder, device="cpu")


def test_wrong_input_name_or_type_is_refused(tmp_path):
    g = embedding_graph()
    g.input[0].name = "pixels"
    g.node[0].input[0] = "pixels"
    folder = make_model_dir(tmp_path / "m", emb_graph=g)
    with pytest.raises(ModelDirError, match=r"embedding\.onnx: graph inputs \['pixels'\], "
                                            r"expected one input 'images'"):
        FaceVerifier(folder, device="cpu")


def test_files_of_two_exports_are_refused(tmp_path):
    folder = make_model_dir(tmp_path / "m", emb_meta=_meta(export_id="aaa"),
                            fm_meta=_meta(export_id="bbb"))
    with pytest.raises(ModelDirError, match=r"embedding\.onnx: export id aaa but .*featuremap"
                                            r"\.onnx has bbb: the folder mixes files of two"):
        FaceVerifier(folder, device="cpu")
    with pytest.raises(ModelDirError, match=r"featuremap\.onnx: export id bbb but .*embedding"):
        FaceExplainer(folder, device="cpu")
    # older exports carry no id: accepted, as is a folder with one file only
    old = make_model_dir(tmp_path / "old", emb_meta=_meta(export_id=None),
                         fm_meta=_meta(export_id="bbb"))
    FaceVerifier(old, device="cpu")
    FaceExplainer(old, device="cpu")
    (folder / "featuremap.onnx").unlink()
    FaceVerifier(folder, device="cpu")


def test_onnx_metadata_reader_agrees_with_onnx(model, tmp_path):
    meta = {p.key: p.value for p in onnx.load(str(model / "featuremap.onnx")).metadata_props}
    assert onnx_metadata(model / "featuremap.onnx") == meta
    bad = tmp_path / "bad.onnx"
    bad.write_bytes((model / "featuremap.onnx").read_bytes()[:50])
    with pytest.raises(ValueError):
        onnx_metadata(bad)


def test_each_export_gets_a_new_id_shared_by_its_files():
    cfg = json.loads((ROOT / "tests" / "fixtures" / "export_tiny" / "config.json").read_text())
    a, b = (build_metadata(cfg, flip=True, parts=None) for _ in range(2))
    assert a["export_id"] != b["export_id"]
    assert uuid.UUID(hex=a["export_id"]).version == 4
    # export_model builds the metadata once and writes it into every file (tests/test_export.py
    # checks the two files of a real export carry the same id)


# ----------------------------------------------------------------------------------------------
# 15. explain --out
# ----------------------------------------------------------------------------------------------

def test_explain_out_existing_folder_is_a_clear_error(model, tmp_path, capsys):
    rc = runtime.main(["explain", str(FACE_A), "--model", str(model), "--device", "cpu",
                       "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path}: is a folder; give the overlay's file name"), err


@pytest.mark.parametrize("name,fmt", [("heat.png", "PNG"), ("heat.jpg", "JPEG"),
                                      ("heat.JPEG", "JPEG"), ("heat.webp", "WEBP")])
def test_explain_writes_the_format_of_the_extension(model, tmp_path, name, fmt):
    out = tmp_path / name
    assert runtime.main(["explain", str(FACE_A), "--model", str(model), "--device", "cpu",
                         "--out", str(out), "--top-k", "2"]) == 0
    with Image.open(out) as im:
        assert im.format == fmt and im.size == overlay_size(2)
    x = FaceExplainer(model, device="cpu").explain(FACE_A, top_k=2)
    with Image.open(x.save(tmp_path / f"api_{name}")) as im:
        assert im.format == fmt


@pytest.mark.parametrize("name", ["heat.gif", "heat", "heat.png.txt"])
def test_unknown_overlay_extension_is_refused_before_running(model, tmp_path, name, capsys):
    with pytest.raises(ValueError, match=r"unknown overlay extension .*use \.png, \.jpg, "
                                         r"\.jpeg, \.webp"):
        FaceExplainer(model, device="cpu").explain(FACE_A, out=tmp_path / name)
    assert not (tmp_path / name).exists()
    rc = runtime.main(["explain", str(FACE_A), "--model", str(model), "--device", "cpu",
                       "--out", str(tmp_path / name)])
    assert rc == 2 and "unknown overlay extension" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# 16. thresholds and batch sizes
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, -2, "x", True, None])
def test_per_call_threshold_is_validated(model, bad):
    v = FaceVerifier(model, device="cpu")
    if bad is None:   # None means "the model's threshold"
        assert v.verify(FACE_A, FACE_A).threshold == 0.5
        return
    with pytest.raises(ValueError, match=r"threshold must be a cosine similarity in \[-1, 1\]"):
        v.verify(FACE_A, FACE_A, threshold=bad)
    with pytest.raises(ValueError, match=r"threshold must be a cosine similarity in \[-1, 1\]"):
        FaceVerifier(model, device="cpu", threshold=bad)


def test_per_call_threshold_in_range_is_used(model):
    v = FaceVerifier(model, device="cpu")
    r = v.verify(FACE_A, FACE_A, threshold=1)
    assert r.threshold == 1.0 and r.same == (r.similarity >= 1.0)


@pytest.mark.parametrize("raw", ["abc", "nan", "2.0", ""])
def test_bad_metadata_threshold_names_the_file(tmp_path, raw):
    folder = make_model_dir(tmp_path / "m", emb_meta=_meta(threshold=raw))
    with pytest.raises(ModelDirError, match=r"embedding\.onnx: metadata threshold must be a "
                                            r"cosine similarity in \[-1, 1\]"):
        FaceVerifier(folder, device="cpu")
    # an explicit threshold does not need the metadata's
    assert FaceVerifier(folder, device="cpu", threshold=0.3).threshold == 0.3


def test_cli_threshold_nan_is_a_one_line_error(model):
    rc, out, err = _cli("verify", FACE_A, FACE_B, "--model", model, "--device", "cpu",
                        "--threshold", "nan")
    assert rc == 2 and err.count("\n") == 1 and "threshold must be a cosine" in err, err


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_embed_batch_size_is_validated(model, bad):
    v = FaceVerifier(model, device="cpu")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        v.embed([FACE_A, FACE_B], batch_size=bad)
    assert v.embed([FACE_A, FACE_B, FACE_A], batch_size=np.int64(2)).shape == (3, 3)
