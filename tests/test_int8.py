"""int8 export (zoo.exporting.quantize: static QDQ quantization; zoo.exporting.int8_gate: the
accuracy gate; zoo.exporting.int8_faces: its faces) and the runtime's precision="int8".

The model is the committed trained fixture (tests/fixtures/export_tiny: VGG13+BN width 1/8,
64 px, 6 epochs on 30 ORL identities; held-out ORL AUC 0.95). Its gate set, the 10 held-out ORL
identities, gives 100 faces and 4950 pairs (450 same-identity), so one flipped decision is 0.02%
and the 1% criterion is 49 pairs: large enough to judge. The gate's numbers are checked against
brute-force float64 computations; a constant-image calibration must fail it.
"""
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from export.explainer import FaceExplainer
from export.model_dir import EMBEDDING_INT8_FILE, FEATUREMAP_INT8_FILE, ModelDirError, onnx_metadata
from export.verifier import FaceVerifier
from zoo.data.orl import orl_identity_splits, orl_root
from zoo.exporting import int8_faces as F, int8_gate as G, quantize as Q
from zoo.exporting.__main__ import main as export_main
from zoo.exporting.model_export import export_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "export_tiny"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8_zoo") / "tiny-ecloss"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py"))
    return folder


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8_out")
    lines = []
    result = export_model(model, out, torchscript=False, int8=Q.Int8Options(),
                          log=lines.append)
    return out, result, lines


def _config(model):
    return json.loads((model / "config.json").read_text())


def _constant_faces(folder: Path, n: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.new("L", (92, 112), 128).save(folder / f"{k}.png")
    return folder


def _orl_identity_folders(dest: Path, ids) -> Path:
    for i in ids:
        (dest / f"s{i}").mkdir(parents=True)
        for n in range(1, 11):
            shutil.copy(orl_root() / f"s{i}" / f"{n}.pgm", dest / f"s{i}" / f"{n}.pgm")
    return dest


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------

def test_int8_export_passes_gate_and_records_it(model, exported):
    out, result, lines = exported
    assert {EMBEDDING_INT8_FILE, FEATUREMAP_INT8_FILE} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    emb = result.quantization[EMBEDDING_INT8_FILE]
    assert emb["passed"] and emb["faces"] == 100 and emb["pairs"] == 4950
    assert emb["same_pairs"] == 450
    assert emb["mean_cosine"] >= G.GATE_MIN_MEAN_COSINE
    assert abs(emb["auc_int8"] - emb["auc_float"]) <= G.GATE_MAX_AUC_CHANGE
    assert emb["flip_rate"] <= G.GATE_MAX_FLIP_RATE
    fm = result.quantization[FEATUREMAP_INT8_FILE]
    assert fm["passed"] and fm["mean_iou"] >= G.GATE_MIN_MASK_IOU
    assert any(line.startswith("int8 gate embedding-int8.onnx") and "mean cosine" in line
               for line in lines)

    float_meta = onnx_metadata(out / "embedding.onnx")
    meta = onnx_metadata(out / EMBEDDING_INT8_FILE)
    assert meta["precision"] == "int8" and "precision" not in float_meta
    assert meta["export_id"] == float_meta["export_id"]
    assert meta["threshold"] == float_meta["threshold"]
    rec = json.loads(meta["quantization"])
    assert rec["format"] == "QDQ" and rec["calibration_method"] == Q.DEFAULT_METHOD
    assert rec["gate"]["limits"]["min_mean_cosine"] == G.GATE_MIN_MEAN_COSINE
    assert rec["gate"]["mean_cosine"] == pytest.approx(emb["mean_cosine"])
    # calibration: 32 faces of the model's 30 training identities, none of the held-out ones
    train, _, heldout = orl_identity_splits(30, 0, 0)
    files = rec["calibration"]["files"]
    assert rec["calibration"]["faces"] == len(files) == Q.DEFAULT_CALIB_FACES
    ids = {int(f.split("/")[0][1:]) for f in files}
    assert ids <= set(train) and not ids & set(heldout)
    assert "held-out" in rec["gate"]["set"] and rec["gate"]["faces"] == 100


def test_int8_graph_is_quantized_and_smaller(exported):
    out, _, _ = exported
    for fname, qname in (("embedding.onnx", EMBEDDING_INT8_FILE),
                         ("featuremap.onnx", FEATUREMAP_INT8_FILE)):
        m = onnx.load(str(out / qname))
        ops = {n.op_type for n in m.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        int8_weights = [t for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert len(int8_weights) >= 10        # the 10 conv layers of VGG13 (+ the embedding)
        assert (out / qname).stat().st_size < 0.5 * (out / fname).stat().st_size
        onnx.checker.check_model(m, full_check=True)


def test_constant_calibration_fails_the_gate_and_writes_nothing(model, tmp_path, capsys):
    const = _constant_faces(tmp_path / "const")
    out = tmp_path / "out"
    lines = []
    with pytest.raises(G.Int8GateError) as exc:
        export_model(model, out, featuremap=False, torchscript=False,
                     int8=Q.Int8Options(calib=const), log=lines.append)
    msg = str(exc.value)
    assert "embedding-int8.onnx failed the int8 accuracy gate" in msg
    assert "mean cosine int8 vs float" in msg and "< 0.99" in msg and "minimum" in msg
    assert "flipped" in msg and "Nothing was written" in msg
    assert list(out.iterdir()) == []      # no int8 file, no float file, no temporary file
    # the CLI: exit 1, the failed numbers on stderr
    code = export_main([str(model), "--out", str(out), "--no-featuremap", "--no-torchscript",
                        "--int8", "--calib", str(const)])
    err = capsys.readouterr().err
    assert code == 1 and "export failed:" in err and "mean cosine int8 vs float" in err
    assert list(out.iterdir()) == []


def test_calib_and_gate_folders(model, tmp_path):
    """The non-default faces: --calib FOLDER (one bad file skipped and reported) and --gate
    FOLDER of identity folders; same gate faces as the ORL default, so the same pair count."""
    _, _, heldout = orl_identity_splits(30, 0, 0)
    gate = _orl_identity_folders(tmp_path / "gate", heldout)
    calib = tmp_path / "calib"
    calib.mkdir()
    for k, i in enumerate(orl_identity_splits(30, 0, 0)[0][:12]):
        shutil.copy(orl_root() / f"s{i}" / "1.pgm", calib / f"{k}.pgm")
    (calib / "broken.png").write_bytes(b"not a png")
    lines = []
    result = export_model(model, tmp_path / "out", featuremap=False, torchscript=False,
                          int8=Q.Int8Options(calib=calib, gate=gate), log=lines.append)
    rep = result.quantization[EMBEDDING_INT8_FILE]
    assert rep["passed"] and rep["pairs"] == 4950 and rep["same_pairs"] == 450
    assert any("skipped 1 undecodable file" in line and "broken.png" in line for line in lines)
    rec = json.loads(onnx_metadata(tmp_path / "out" / EMBEDDING_INT8_FILE)["quantization"])
    assert rec["calibration"]["faces"] == 12 and "broken.png" not in rec["calibration"]["files"]
    assert rec["gate"]["set"] == f"identity folders {gate}"


def test_gate_faces_must_not_be_calibration_faces(model, tmp_path):
    _, _, heldout = orl_identity_splits(30, 0, 0)
    gate = _orl_identity_folders(tmp_path / "gate", heldout)
    calib = tmp_path / "calib"
    calib.mkdir()
    for n in range(1, 11):
        shutil.copy(orl_root() / f"s{heldout[0]}" / f"{n}.pgm", calib / f"x{n}.pgm")
    with pytest.raises(F.Int8Error, match="10 gate face.*also calibration faces"):
        Q.plan_int8(_config(model), {}, Q.Int8Options(calib=calib, gate=gate), print)


def test_gate_refuses_a_set_too_small_to_judge(model, tmp_path):
    _, _, heldout = orl_identity_splits(30, 0, 0)
    gate = _orl_identity_folders(tmp_path / "gate", heldout[:3])    # 30 faces: 435 pairs
    with pytest.raises(F.Int8Error, match=r"435 pairs .*needs at least 500 pairs"):
        Q.plan_int8(_config(model), {}, Q.Int8Options(gate=gate), print)


def test_model_not_trained_on_orl_needs_gate_and_calib(model, tmp_path):
    cfg = _config(model)
    cfg["training"]["data"] = "faces/"
    with pytest.raises(F.Int8Error, match="not ORL.*--gate FOLDER"):
        Q.plan_int8(cfg, {}, Q.Int8Options(), print)
    _, _, heldout = orl_identity_splits(30, 0, 0)
    gate = _orl_identity_folders(tmp_path / "gate", heldout)
    with pytest.raises(F.Int8Error, match="--calib FOLDER"):
        Q.plan_int8(cfg, {}, Q.Int8Options(gate=gate), print)


def test_bad_int8_options(model, tmp_path, capsys):
    with pytest.raises(F.Int8Error, match="calib_faces"):
        Q.Int8Options(calib_faces=3)
    with pytest.raises(F.Int8Error, match="calibration method"):
        Q.Int8Options(method="kl")
    with pytest.raises(F.Int8Error, match="calibration folder does not exist"):
        Q.plan_int8(_config(model), {}, Q.Int8Options(calib=tmp_path / "nope"), print)
    (tmp_path / "few").mkdir()
    with pytest.raises(F.Int8Error, match="0 decodable face images"):
        Q.plan_int8(_config(model), {}, Q.Int8Options(calib=tmp_path / "few"), print)
    with pytest.raises(SystemExit):
        export_main([str(model), "--out", str(tmp_path / "o"), "--calib", str(tmp_path)])
    assert "--calib only apply with --int8" in capsys.readouterr().err
    assert export_main([str(model), "--out", str(tmp_path / "o"), "--int8",
                        "--calib-faces", "2"]) == 1
    assert "calib_faces must be an integer" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------
# the gate's numbers against brute force
# ----------------------------------------------------------------------------------------------

def _brute_auc(scores, same):
    pos = [s for s, y in zip(scores, same) if y]
    neg = [s for s, y in zip(scores, same) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_embedding_gate_against_brute_force():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)
    centres = rng.normal(size=(6, 16))
    f = centres[labels] + 0.8 * rng.normal(size=(30, 16))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    q = f + 0.05 * rng.normal(size=f.shape)           # "int8": a perturbed, unnormalised copy
    g = G.embedding_gate(f.astype(np.float32), q.astype(np.float32), labels, 0.3)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cos = [float(np.dot(a, b)) for a, b in zip(f, qn)]
    pairs = list(itertools.combinations(range(30), 2))
    s_f = [float(np.dot(f[i], f[j])) for i, j in pairs]
    s_q = [float(np.dot(qn[i], qn[j])) for i, j in pairs]
    same = [labels[i] == labels[j] for i, j in pairs]
    assert g.pairs == 435 and g.same_pairs == sum(same) == 60
    assert g.mean_cosine == pytest.approx(np.mean(cos), abs=1e-6)
    assert g.min_cosine == pytest.approx(min(cos), abs=1e-6)
    assert g.auc_float == pytest.approx(_brute_auc(s_f, same), abs=1e-6)
    assert g.auc_int8 == pytest.approx(_brute_auc(s_q, same), abs=1e-6)
    assert g.flipped == sum((a >= 0.3) != (b >= 0.3) for a, b in zip(s_f, s_q)) > 0
    assert g.flip_rate == pytest.approx(g.flipped / 435)
    # each failed number is named; the passing ones are not
    bad = G.embedding_gate(f, f + 0.6 * rng.normal(size=f.shape), labels, 0.3)
    text = " ".join(bad.failures)
    assert not bad.passed and "mean cosine" in text and "flipped" in text
    same_ok = G.embedding_gate(f, f, labels, 0.3)
    assert same_ok.passed and same_ok.flipped == 0 and same_ok.mean_cosine == pytest.approx(1)
    # without a threshold: the float scores' best-accuracy threshold, said so
    g2 = G.embedding_gate(f, q, labels, None)
    assert "best accuracy" in g2.threshold_source
    acc = [np.mean([(s >= t) == y for s, y in zip(s_f, same)]) for t in s_f]
    assert np.mean([(s >= g2.threshold) == y for s, y in zip(s_f, same)]) == pytest.approx(
        max(acc))


@pytest.mark.parametrize("limit, value, named", [
    ("GATE_MIN_MEAN_COSINE", 0.99999, "mean cosine"),
    ("GATE_MAX_AUC_CHANGE", 0.0, "verification AUC"),
    ("GATE_MAX_FLIP_RATE", 0.0, "flipped")])
def test_each_criterion_fails_on_its_own(monkeypatch, limit, value, named):
    """A slightly perturbed copy passes the issue's limits; tightening one limit at a time fails
    exactly that criterion (each number is checked, and named)."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 6)
    f = rng.normal(size=(10, 32))[labels] + rng.normal(size=(60, 32))
    q = f + 0.05 * rng.normal(size=f.shape)
    g = G.embedding_gate(f, q, labels, 0.4)
    assert g.passed and g.flipped > 0 and g.auc_int8 != g.auc_float and g.mean_cosine < 0.99999
    monkeypatch.setattr(G, limit, value)
    bad = G.embedding_gate(f, q, labels, 0.4)
    assert len(bad.failures) == 1 and named in bad.failures[0]
    with pytest.raises(ValueError, match="disagree"):
        G.embedding_gate(f, q[:10], labels, 0.4)


def test_mask_iou_against_brute_force():
    rng = np.random.default_rng(2)
    a = rng.random((3, 4, 9, 9)) > 0.7
    b = rng.random((3, 4, 9, 9)) > 0.7
    a[1, 2] = b[1, 2] = False                   # a dead channel in both: agrees
    b[0, 1] = a[0, 1]
    iou = G.mask_iou(a, b)
    for n in range(3):
        for c in range(4):
            x, y = a[n, c].ravel().tolist(), b[n, c].ravel().tolist()
            inter = sum(p and q for p, q in zip(x, y))
            union = sum(p or q for p, q in zip(x, y))
            assert iou[n, c] == pytest.approx(inter / union if union else 1.0)
    assert iou[1, 2] == 1.0 and iou[0, 1] == 1.0
    g = G.mask_gate(iou, ["f0", "f1", "f2"])
    assert g.mean_iou == pytest.approx(iou.mean()) and not g.passed
    assert g.min_face == ["f0", "f1", "f2"][int(np.argmin(iou.mean(1)))]
    assert "mask IoU" in g.failures[0]
    assert G.mask_gate(G.mask_iou(a, a)).passed


def test_shown_agreement():
    maps = np.array([[9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0.5]])[..., None, None]   # (1, 10, 1, 1)
    assert G.shown_agreement(maps, maps, None)[0] == 1.0
    swapped = maps.copy()
    swapped[0, [7, 8]] = swapped[0, [8, 7]]          # channel 8 enters the top 8, 7 leaves
    assert G.shown_agreement(maps, swapped, None)[0] == pytest.approx(7 / 8)
    silent = np.zeros_like(maps)
    assert G.shown_agreement(silent, silent, None)[0] == 1.0
    assert G.shown_agreement(silent, maps, None)[0] == 0.0


# ----------------------------------------------------------------------------------------------
# runtime
# ----------------------------------------------------------------------------------------------

def test_runtime_int8_agrees_with_float_within_the_gate(model, exported):
    """FaceVerifier(precision="int8") on the held-out faces, through the runtime's own image
    loading: its embeddings pass the gate against the float runtime's, with the numbers the
    export recorded (same faces, same preprocessing)."""
    out, result, _ = exported
    held = F.orl_faces(_config(model), "heldout")
    fv, qv = FaceVerifier(out, device="cpu"), FaceVerifier(out, device="cpu", precision="int8")
    assert qv.precision == "int8" and qv.threshold == fv.threshold
    ef, eq = fv.embed(held.paths), qv.embed(held.paths)
    g = G.embedding_gate(ef, eq, held.labels, fv.threshold, held.names)
    assert g.passed, g.failures
    rec = result.quantization[EMBEDDING_INT8_FILE]
    assert g.mean_cosine == pytest.approx(rec["mean_cosine"], abs=1e-6)
    assert g.flipped == rec["flipped"]
    assert g.auc_int8 == pytest.approx(rec["auc_int8"], abs=1e-9)
    a, b = held.paths[0], held.paths[1]
    assert qv.verify(a, b).similarity == pytest.approx(fv.verify(a, b).similarity, abs=0.02)


def test_explainer_int8_masks_match_float(exported):
    out, _, _ = exported
    fe, qe = FaceExplainer(out, device="cpu"), FaceExplainer(out, device="cpu", precision="int8")
    assert qe.precision == "int8" and qe.parts == fe.parts
    for face in (orl_root() / "s1" / "1.pgm", orl_root() / "s7" / "4.pgm"):
        xf, xq = fe.explain(face), qe.explain(face)
        assert G.mask_iou(xf.masks[None], xq.masks[None]).mean() >= G.GATE_MIN_MASK_IOU
        assert xq.overlay.size == xf.overlay.size


def test_precision_int8_without_the_file_is_a_clear_error(exported, tmp_path):
    out, _, _ = exported
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in ("embedding.onnx", "featuremap.onnx", "head.onnx"):
        if (out / f).exists():
            shutil.copy(out / f, plain / f)
    with pytest.raises(ModelDirError, match=r"embedding-int8.onnx: missing; .* has no int8 "
                                            r"model \(export it with .*--int8"):
        FaceVerifier(plain, precision="int8")
    with pytest.raises(ModelDirError, match="featuremap-int8.onnx: missing"):
        FaceExplainer(plain, precision="int8")
    with pytest.raises(ValueError, match="precision must be one of"):
        FaceVerifier(out, precision="fp16")
    FaceVerifier(plain)                                    # float stays the default
    face = str(orl_root() / "s1" / "1.pgm")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "export.runtime", "verify", face, face, "--model"]
    r = subprocess.run(cmd + [str(plain), "--precision", "int8"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "has no int8 model" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(cmd + [str(out), "--precision", "int8", "--json"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_float_file_renamed_to_int8_is_refused(exported, tmp_path):
    out, _, _ = exported
    fake = tmp_path / "fake"
    fake.mkdir()
    shutil.copy(out / "embedding.onnx", fake / "embedding.onnx")
    shutil.copy(out / "embedding.onnx", fake / EMBEDDING_INT8_FILE)
    with pytest.raises(ModelDirError, match="metadata precision is 'float'"):
        FaceVerifier(fake, precision="int8")
    shutil.copy(out / EMBEDDING_INT8_FILE, fake / "embedding.onnx")
    with pytest.raises(ModelDirError, match="metadata precision is 'int8'"):
        FaceVerifier(fake)
