"""Issue 12, loss and training (items 11, 12) and the weights hash: map shapes are checked, not
only H*W; a NaN / inf loss stops training with a clear message and keeps the last good
checkpoint (under AMP, GradScaler skips the step); a changed model.safetensors is refused."""
import csv
import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo import hub, registry, templates as tpl
from zoo.checkpoint import load_checkpoint
from zoo.ecloss import ECLoss, content_free_term, flatten_maps, mutual_information
from zoo.engine import train
from zoo.finite import NonFiniteLossError
from zoo.models.vgg import VGGFace
from zoo.train_config import TrainConfig

# tests/test_train.py's TINY: VGG13 width 1/16, 32 px (2x2 maps), 5 steps of 8 per epoch.
TINY = dict(arch="vgg13", preset="cpu", width=1 / 16, input_size=32, batch_norm=False,
            embedding_bn=False, embedding_dim=16, flip=False, register=False, evaluate=False,
            progress=False, orl_num_train=4, batch_size=8, lr=0.05, templates="400", tau=1.0)


# ------------------------------------------------------------------ 11: map shapes

def test_flatten_maps_checks_the_map_shape_not_only_its_size():
    t3 = tpl.get_templates(14, 50, dtype=torch.float32)      # (M, 14, 14)
    t2 = t3.reshape(len(t3), -1)                               # (M, 196)
    wrong = torch.rand(2, 3, 7, 28)                            # 196 positions, wrong shape
    for t in (t3, t2):
        with pytest.raises(ValueError, match="feature maps are 7x28 but the templates are 14x14"):
            flatten_maps(wrong, t)
        with pytest.raises(ValueError, match="7x28"):
            mutual_information(wrong, t, impl="reference")
        with pytest.raises(ValueError, match="7x28"):
            content_free_term(wrong, t)
    x, _ = flatten_maps(torch.rand(2, 3, 14, 14), t2)          # the right shape still works
    assert x.shape == (6, 196)
    assert flatten_maps(torch.rand(6, 196), t3)[0].shape == (6, 196)  # (N, n*n) as before


def test_ecloss_compares_the_maps_with_map_size():
    loss = ECLoss(14, num_templates=50, tau=1.0, impl="reference")
    for shape in [(2, 3, 7, 28), (2, 3, 28, 7), (2, 3, 7, 7), (6, 49)]:
        with pytest.raises(ValueError, match=r"ECLoss\(map_size=14\) needs maps of shape"):
            loss(torch.rand(*shape))
        with pytest.raises(ValueError, match=r"map_size=14"):
            loss.prepare(torch.rand(*shape))  # the training engine's path
    assert torch.isfinite(loss(torch.rand(2, 3, 14, 14)))
    assert torch.isfinite(loss(torch.rand(6, 196)))


# ------------------------------------------------------------------ 12: non-finite loss

def _inject_nan(monkeypatch, at_steps, where="maps"):
    """NaN in the first face's maps (-> MI) or embedding (-> CE) at the given training steps."""
    real = VGGFace.forward_with_features
    calls = [0]

    def forward_with_features(self, x):
        emb, fmap = real(self, x)
        if self.training:
            calls[0] += 1
            if calls[0] in at_steps:
                if where == "maps":
                    fmap = fmap.clone()
                    fmap[0] = float("nan")
                else:
                    emb = emb.clone()
                    emb[0] = float("nan")
        return emb, fmap
    monkeypatch.setattr(VGGFace, "forward_with_features", forward_with_features)


def _ckpt(run_dir):
    return load_checkpoint(Path(run_dir) / "checkpoint.pt")


def test_nan_in_the_maps_stops_at_that_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    clean = train(TrainConfig(**TINY, epochs=2, max_steps=5, out=str(tmp_path / "clean")))
    assert clean["steps"] == 5
    _inject_nan(monkeypatch, {7})
    with pytest.raises(NonFiniteLossError) as exc:
        train(TrainConfig(**TINY, epochs=2, out=str(tmp_path / "nan")))
    msg = str(exc.value)
    assert "step 7 (epoch 2): non-finite MI (CE = " in msg and "MI = nan" in msg, msg
    assert "content-free term" in msg and "stopped before updating the weights" in msg
    assert "last good checkpoint" in msg and "checkpoint.pt (epoch 1)" in msg
    good, kept = _ckpt(clean["run_dir"]), _ckpt(tmp_path / "nan" / "vgg13-ecloss")
    assert kept["epoch"] == 1 and kept["step"] == 5
    for k, v in good["net"].items():
        assert torch.equal(v, kept["net"][k]), k
    rows = list(csv.DictReader(open(tmp_path / "nan" / "vgg13-ecloss" / "log.csv")))
    assert len(rows) == 6  # steps 1..6 logged; step 7 stopped before its update


def test_nan_in_the_embedding_names_the_ce_term(tmp_path, monkeypatch):
    _inject_nan(monkeypatch, {2}, where="embedding")
    with pytest.raises(NonFiniteLossError, match=r"step 2 \(epoch 1\): non-finite CE \(CE = nan"
                                                 r".*no checkpoint had been written yet"):
        train(TrainConfig(**TINY, epochs=1, out=str(tmp_path), loss="softmax"))


def test_cli_reports_a_non_finite_loss_in_one_line(tmp_path, monkeypatch, capsys):
    from zoo.train import main
    _inject_nan(monkeypatch, {1})
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"embedding_bn": False, "orl_num_train": 4}))
    assert main(["vgg13", "--width", "0.0625", "--input-size", "32", "--bn", "false",
                 "--embedding-dim", "16", "--no-flip", "--no-register", "--no-eval",
                 "--no-progress", "--batch-size", "8", "--epochs", "1", "--tau", "1",
                 "--preset", "cpu", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zoo.train: error: step 1 (epoch 1): non-finite MI")


def _cpu_grad_scaler(monkeypatch):
    """The engine's GradScaler, enabled on the CPU (GradScaler("cpu")): the AMP skip path."""
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda *a, **k: real("cpu", enabled=True))


def test_under_amp_gradscaler_skips_the_step(tmp_path, monkeypatch, capsys):
    _cpu_grad_scaler(monkeypatch)
    _inject_nan(monkeypatch, {3})
    res = train(TrainConfig(**TINY, epochs=1, amp=True, out=str(tmp_path), beta_mode="auto"))
    assert res["steps"] == 5
    out = capsys.readouterr().out
    assert "step 3 (epoch 1): non-finite MI" in out and "GradScaler skips the step" in out
    state = _ckpt(res["run_dir"])
    assert all(torch.isfinite(v).all() for v in state["net"].values())
    assert state["scaler"]["scale"] < 65536.0  # the scaler saw the inf gradients
    rows = list(csv.DictReader(open(Path(res["run_dir"]) / "log.csv")))
    assert rows[2]["mi"] == "nan" and all(r["mi"] != "nan" for k, r in enumerate(rows) if k != 2)
    assert rows[3]["beta"] == rows[2]["beta"]  # the skipped step did not move beta


def test_under_amp_too_many_skipped_steps_in_a_row_stop(tmp_path, monkeypatch):
    import zoo.finite as finite  # the rule's home: NonFiniteGuard reads it at each check
    _cpu_grad_scaler(monkeypatch)
    monkeypatch.setattr(finite, "NONFINITE_SKIP_LIMIT", 2)
    _inject_nan(monkeypatch, {2, 3, 4})
    with pytest.raises(NonFiniteLossError, match=r"step 4 \(epoch 1\): .* in 3 steps in a row"):
        train(TrainConfig(**TINY, epochs=1, amp=True, out=str(tmp_path)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (AMP float16 + GradScaler)")
def test_cuda_amp_skips_a_nan_step(tmp_path, monkeypatch):
    _inject_nan(monkeypatch, {2})
    res = train(TrainConfig(**TINY, epochs=1, amp=True, device="cuda", out=str(tmp_path)))
    assert res["steps"] == 5
    state = _ckpt(res["run_dir"])
    assert all(torch.isfinite(v).all() for v in state["net"].values())


# ------------------------------------------------------------------ weights hash

@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "zoo_home"
    monkeypatch.setenv("ZOO_HOME", str(h))
    monkeypatch.setattr(registry, "REMOTE", {})
    return h


def _tiny_model():
    torch.manual_seed(0)
    return zoo.create("vgg13-ecloss", name="tiny-h", width=1 / 16, input_size=64,
                      embedding_dim=16).eval()


def _flip_a_data_byte(path):
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    data[8 + header_len + 100] ^= 0x40  # inside the tensors, not the header
    path.write_bytes(bytes(data))


def test_a_flipped_weights_byte_is_refused_on_load(home):
    folder = zoo.save(_tiny_model())
    w, c = folder / "model.safetensors", folder / "config.json"
    cfg = json.loads(c.read_text())
    assert cfg["weights_sha256"] == hub.file_sha256(w)
    zoo.load("tiny-h")
    _flip_a_data_byte(w)
    for spec in ("tiny-h", folder, w):
        with pytest.raises(ValueError, match=rf"{w}: sha256 [0-9a-f]{{64}} differs from the "
                                             rf"[0-9a-f]{{64}} recorded in {c}"):
            zoo.load(spec)


def test_configs_without_the_hash_still_load(home):
    m = _tiny_model()
    folder = zoo.save(m)
    c = folder / "config.json"
    cfg = json.loads(c.read_text())
    del cfg["weights_sha256"]  # a model saved before the hash was recorded
    c.write_text(json.dumps(cfg))
    m2 = zoo.load("tiny-h")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    cfg["weights_sha256"] = "not a hash"
    c.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=rf"{c}: weights_sha256: sha256 must be 64 hex digits"):
        zoo.load("tiny-h")
