"""Training engine: DDP equivalence, exact resume, crash-safe checkpoints, learning."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from zoo.checkpoint import load_checkpoint
from zoo.engine import train
from zoo.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

# A tiny VGG13 with no batch statistics (BN off everywhere), 32 px input -> 2x2 target maps.
TINY = dict(arch="vgg13", preset="cpu", width=1 / 16, input_size=32, batch_norm=False,
            embedding_bn=False, embedding_dim=16, flip=False, register=False, evaluate=False,
            progress=False, orl_num_train=4, batch_size=8, lr=0.05, templates="400", tau=1.0)


def _params(run_dir):
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    return state["net"], state


def test_two_rank_gloo_equals_one_rank(tmp_path):
    common = ["vgg13", "--width", "0.0625", "--input-size", "32", "--bn", "false",
              "--embedding-dim", "16", "--no-flip", "--no-register", "--no-eval", "--no-progress",
              "--batch-size", "8", "--epochs", "1", "--marginal", "batch", "--tau", "1",
              "--preset", "cpu", "--lr", "0.05", "--beta", "0.5", "--beta-mode", "fixed"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    # embedding_bn is not a CLI option: pass it through a config file
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"embedding_bn": false, "orl_num_train": 4}')
    one = subprocess.run([sys.executable, "-m", "zoo.train", *common, "--config", str(cfg),
                          "--out", str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "-m", "zoo.train", *common, "--config",
                          str(cfg), "--out", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "2 x CPU processes" in two.stdout
    p1, s1 = _params(tmp_path / "one" / "vgg13-ecloss")
    p2, s2 = _params(tmp_path / "two" / "vgg13-ecloss")
    assert s1["step"] == s2["step"] == 5  # 40 images / global batch 8
    for k in p1:
        torch.testing.assert_close(p1[k], p2[k], rtol=1e-4, atol=1e-5, msg=k)
    moved = sum(float((p1[k] - 0).abs().sum()) for k in p1)
    assert moved > 0


def test_resume_equals_uninterrupted(tmp_path):
    full = train(TrainConfig(**TINY, epochs=3, out=str(tmp_path / "a"), loss="ecloss",
                             marginal="uniform", beta_mode="auto"))
    assert full["steps"] == 15
    part = train(TrainConfig(**TINY, epochs=3, out=str(tmp_path / "b"), loss="ecloss",
                             marginal="uniform", beta_mode="auto", max_steps=5))
    assert part["steps"] == 5 and part["epochs"] == 1
    resumed = train(TrainConfig(**TINY, epochs=3, out=str(tmp_path / "b"), loss="ecloss",
                                marginal="uniform", beta_mode="auto", resume=True))
    assert resumed["steps"] == 15
    pa, sa = _params(tmp_path / "a" / "vgg13-ecloss")
    pb, sb = _params(tmp_path / "b" / "vgg13-ecloss")
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    assert sa["beta_policy"] == sb["beta_policy"]
    rows = (tmp_path / "b" / "vgg13-ecloss" / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + 15  # the log continues across the resume


_WRITER = r"""
import sys, torch
from pathlib import Path
from zoo.checkpoint import save_checkpoint
path = Path(sys.argv[1])
k = 0
while True:
    k += 1
    save_checkpoint(path, {"k": k, "w": torch.full((4_000_000,), float(k))})
    print(k, flush=True)
"""


def test_sigkill_during_checkpoint_write_keeps_previous(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(ckpt)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    first = proc.stdout.readline()  # one checkpoint is complete
    assert first.strip() == "1"
    time.sleep(0.35)                # somewhere inside a later write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(ckpt)
    assert state["k"] >= 1 and torch.all(state["w"] == float(state["k"]))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "checkpoint.pt"]
    # a killed writer may leave its temp file, never a damaged checkpoint.pt
    assert all(name.startswith(".checkpoint.pt.tmp") for name in leftovers)


def test_corrupt_checkpoint_names_file(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="checkpoint.pt"):
        load_checkpoint(bad)


def test_loss_decreases_on_tiny_orl_subset(tmp_path):
    res = train(TrainConfig(**{**TINY, "width": 0.125, "input_size": 48, "embedding_dim": 32,
                               "batch_norm": True, "embedding_bn": True},
                            epochs=8, out=str(tmp_path), loss="ecloss"))
    import csv
    rows = list(csv.DictReader(open(Path(res["run_dir"]) / "log.csv")))
    ce = [float(r["ce"]) for r in rows]
    first, last = sum(ce[:5]) / 5, sum(ce[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert (Path(res["run_dir"]) / "curves.png").stat().st_size > 1000


def test_bad_options():
    with pytest.raises(ValueError, match="unknown architecture"):
        train(TrainConfig(arch="resnet50"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(TrainConfig(**{**TINY, "data": "/nowhere/at/all"}))


def test_configs_written_before_the_lab_moved_out_still_load(tmp_path):
    """Issue 21: configs of models trained with the old experiment flags hold ecloss.map_norm /
    template_peaks and training.background / off_head / shuffled_faces. They load, keep what
    they say (so the model stays describable) and are checked; new configs hold none of them and
    record a hook's description instead."""
    import json

    from zoo.config import ECLOSS_KEYS, default_config, load_config
    from zoo.train_config import model_config, resolve_config
    fixture = load_config(ROOT / "tests" / "fixtures" / "export_tiny" / "config.json")
    assert fixture["ecloss"]["map_norm"] == "none"
    old = default_config("vgg13", width=1 / 16, input_size=32)
    old["ecloss"].update(map_norm="max", template_peaks="interior")
    old["training"].update(background=0.5, off_head=1.0, shuffled_faces=0.5)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    loaded = load_config(path)
    assert loaded["ecloss"]["map_norm"] == "max"
    assert loaded["ecloss"]["template_peaks"] == "interior"
    assert loaded["training"]["off_head"] == 1.0 and loaded["training"]["background"] == 0.5
    path.write_text(json.dumps({**old, "ecloss": {**old["ecloss"], "map_norm": "l1"}}))
    with pytest.raises(ValueError, match=rf"{path}: ecloss.map_norm must be one of"):
        load_config(path)
    with pytest.raises(TypeError, match="unknown ecloss key"):   # never written anew
        default_config("vgg13", ecloss={"map_norm": "max"})
    cfg = resolve_config(TrainConfig(**TINY), False)
    new = model_config(cfg, 4)
    assert set(new["ecloss"]) == set(ECLOSS_KEYS) and "hook" not in new["training"]
    assert not {"background", "off_head", "shuffled_faces"} & set(new["training"])
    hooked = model_config(cfg, 4, hook={"hook": "lab.X", "w": 1.0})
    assert hooked["training"]["hook"] == {"hook": "lab.X", "w": 1.0}
