"""python -m research.train: zoo.train's options plus the lab's, trained through one hook
(zoo.training_hook); without a lab option it is zoo.train, and zoo.train shows none of them."""
import json

import pytest
import torch

from research import train as lab_train
from research.hooks import LAB_DEFAULTS, ExperimentHook, hook_from_settings
from zoo import train as zoo_train
from zoo.checkpoint import load_checkpoint
from zoo.engine import train
from zoo.train_config import TrainConfig
from zoo.training_hook import TrainingHook

LAB_OPTIONS = ("--background", "--off-head", "--shuffled-faces", "--map-norm",
               "--template-peaks")
TINY_ARGS = ["vgg13", "--width", "0.0625", "--input-size", "32", "--bn", "false",
             "--embedding-dim", "16", "--no-flip", "--no-eval", "--no-progress",
             "--batch-size", "8", "--epochs", "1", "--tau", "1", "--preset", "cpu"]
TINY = dict(arch="vgg13", preset="cpu", width=1 / 16, input_size=32, batch_norm=False,
            embedding_bn=False, embedding_dim=16, flip=False, register=False, evaluate=False,
            progress=False, orl_num_train=4, batch_size=8, lr=0.05, templates="400", tau=1.0,
            epochs=1)


def _tensors_equal(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    return True   # numbers and strings: not weights (the config string differs by name)


def _config_file(tmp_path, **extra):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"embedding_bn": False, "orl_num_train": 4, **extra}))
    return str(path)


def test_help_shows_the_method_to_users_and_the_lab_to_the_lab():
    user = zoo_train.build_parser().format_help()
    lab = lab_train.build_lab_parser().format_help()
    for option in LAB_OPTIONS:
        assert option not in user and option in lab
    assert "--content-free" in user and "--padding" in user and "--content-free" in lab


def test_a_no_op_hook_trains_what_no_hook_trains(tmp_path):
    a = train(TrainConfig(**TINY, out=str(tmp_path / "a")))
    b = train(TrainConfig(**TINY, out=str(tmp_path / "b")), TrainingHook())
    assert "hook" not in a and "hook" not in b
    sa = load_checkpoint(tmp_path / "a" / "vgg13-ecloss" / "checkpoint.pt")
    sb = load_checkpoint(tmp_path / "b" / "vgg13-ecloss" / "checkpoint.pt")
    assert sa["step"] == sb["step"] == 5 and _tensors_equal(sa, sb)


def test_without_lab_options_research_train_is_zoo_train(tmp_path):
    cfg = _config_file(tmp_path)
    assert zoo_train.main([*TINY_ARGS, "--no-register", "--config", cfg,
                           "--out", str(tmp_path / "zoo")]) == 0
    assert lab_train.main([*TINY_ARGS, "--no-register", "--config", cfg, "--map-norm", "none",
                           "--out", str(tmp_path / "lab")]) == 0
    sa = load_checkpoint(tmp_path / "zoo" / "vgg13-ecloss" / "checkpoint.pt")
    sb = load_checkpoint(tmp_path / "lab" / "vgg13-ecloss" / "checkpoint.pt")
    assert _tensors_equal(sa, sb)
    assert "hook" not in json.loads((tmp_path / "lab" / "vgg13-ecloss" /
                                     "train_config.json").read_text())


def test_a_lab_run_records_its_hook(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    # a --config file as written before issue 21 may hold the lab's fields
    cfg = _config_file(tmp_path, background=0.0, shuffled_faces=0.5)
    assert lab_train.main([*TINY_ARGS, "--config", cfg, "--map-norm", "max", "--name", "lab",
                           "--out", str(tmp_path / "runs")]) == 0
    want = {"hook": "research.hooks.ExperimentHook", **LAB_DEFAULTS, "map_norm": "max",
            "shuffled_faces": 0.5}
    run = tmp_path / "runs" / "lab"
    assert json.loads((run / "train_config.json").read_text())["hook"] == want
    assert json.loads((run / "summary.json").read_text())["hook"] == want
    stored = json.loads((tmp_path / "home" / "lab" / "config.json").read_text())
    assert stored["training"]["hook"] == want
    # zoo.train knows none of the lab's fields
    with pytest.raises(SystemExit, match="unknown fields"):
        zoo_train.config_from_args([*TINY_ARGS, "--config", cfg])


def test_lab_settings_at_their_defaults_need_no_hook(capsys):
    assert hook_from_settings({}) is None
    assert hook_from_settings(dict(LAB_DEFAULTS)) is None
    assert hook_from_settings({"map_norm": None, "off_head": 0.0}) is None
    assert isinstance(hook_from_settings({"off_head": 1.0}), ExperimentHook)
    assert lab_train.main([*TINY_ARGS, "--background", "2"]) == 2
    assert "research.train: error: background must be a probability" in capsys.readouterr().err
