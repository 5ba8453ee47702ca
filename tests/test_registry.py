"""Model names and configs (zoo.registry, zoo.config, zoo.builder.create): the paper configs,
create with overrides, config errors, unknown names, listing and name resolution."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import out, tiny

import zoo
from zoo import registry
from zoo.config import CONFIG_KEYS, PAPER_MODELS, default_config

REPO = Path(__file__).resolve().parents[1]
PAPER = ["vgg13-ecloss", "vgg13-softmax", "vgg16-ecloss", "vgg16-softmax", "vgg19-ecloss",
         "vgg19-softmax"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    h = tmp_path / "zoo_home"
    monkeypatch.setenv("ZOO_HOME", str(h))
    monkeypatch.setattr(registry, "REMOTE", {})
    return h


# ---------------------------------------------------------------------------- configs / create

def test_paper_models_are_the_paper_configuration():
    assert sorted(PAPER_MODELS) == PAPER
    for name, cfg in PAPER_MODELS.items():
        depth, loss = int(name[3:5]), name.split("-")[1]
        assert cfg["arch"] == {"depth": depth, "batch_norm": False, "width": 1.0,
                               "input_size": 224, "embedding_dim": 512, "dropout": 0.0,
                               "embedding_bn": True, "padding": "zeros"}
        assert cfg["loss"] == loss and cfg["head"] == "softmax"
        # the paper's ECLoss; the lab's map_norm / template_peaks are no longer written (issue 21)
        assert cfg["ecloss"] == {"num_templates": 400, "tau": 1e-3, "radius": 4.0,
                                 "marginal": "uniform", "alpha": 1.0, "beta": 1e-5,
                                 "content_free": 0.0, "beta_mode": "auto"}
        assert (cfg["feature_size"], cfg["feature_channels"]) == (14, 512)
        assert cfg["mean"] == cfg["std"] == [0.5, 0.5, 0.5] and cfg["channel_order"] == "RGB"
        json.dumps(cfg)
        # The target layer is computed without building; it must name the real module.
        m = zoo.create(name, width=1 / 16)
        assert m.zoo_config["target_layer"] == cfg["target_layer"] == m.target_layer
        assert isinstance(dict(m.named_modules())[cfg["target_layer"]], torch.nn.ReLU)


def test_create_overrides_arch_ecloss_and_top_level_keys():
    m = zoo.create("vgg16-ecloss", width=0.25, input_size=112, tau=1.0, head="arcface",
                   batch_norm=True)
    c = m.zoo_config
    assert (m.width, m.input_size, m.batch_norm) == (0.25, 112, True)
    assert c["arch"]["width"] == 0.25 and c["arch"]["input_size"] == 112
    assert (c["feature_size"], c["feature_channels"]) == (7, 128) == (m.feature_size,
                                                                      m.feature_channels)
    assert c["target_layer"] == m.target_layer
    assert c["ecloss"]["tau"] == 1.0 and c["ecloss"]["num_templates"] == 400
    assert c["head"] == "arcface" and c["name"] == "vgg16-ecloss"
    # a base name plus a loss yields the paper name of that pair
    assert default_config("vgg19", loss="softmax")["name"] == "vgg19-softmax"
    assert default_config("vgg19")["loss"] == "ecloss"


def test_default_config_fills_a_partial_dict():
    c = default_config({"name": "mine", "arch": {"depth": 19, "width": 0.5},
                                 "loss": "softmax", "metrics": {"auc": 0.9}})
    assert c["name"] == "mine" and c["arch"]["input_size"] == 224
    assert c["arch"]["width"] == 0.5 and c["feature_channels"] == 256
    assert c["ecloss"]["beta"] == 1e-5 and c["metrics"] == {"auc": 0.9}
    assert list(c) == list(CONFIG_KEYS)


def test_unknown_override_is_a_type_error_listing_valid_keys():
    with pytest.raises(TypeError) as e:
        zoo.create("vgg16-ecloss", widht=0.5)
    assert "widht" in str(e.value) and "width" in str(e.value) and "tau" in str(e.value)
    with pytest.raises(TypeError, match="follow from arch"):
        default_config("vgg16-ecloss", feature_size=7)
    with pytest.raises(TypeError, match="unknown arch key"):
        default_config("vgg16-ecloss", arch={"depht": 16})


@pytest.mark.parametrize("kw, msg", [
    (dict(input_size=100), "input_size"), (dict(depth=12), "depth"), (dict(width=0), "width"),
    (dict(loss="triplet"), "loss"), (dict(head="sphere"), "head"),
    (dict(marginal="x"), "marginal"), (dict(beta_mode="sometimes"), "beta_mode"),
    (dict(tau=-1.0), "tau"), (dict(dropout=1.0), "dropout"), (dict(name="../evil"), "name"),
    (dict(std=[0.5, 0.0, 0.5]), "std"), (dict(metrics={"x": float("nan")}), "JSON"),
])
def test_bad_config_values_are_value_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        default_config("vgg16-ecloss", **kw)


def test_unknown_name_lists_the_known_ones():
    for call in (zoo.create, zoo.load):
        with pytest.raises(ValueError) as e:
            call("vgg17-ecloss")
        assert "vgg17-ecloss" in str(e.value)
        assert all(n in str(e.value) for n in PAPER)


def test_paper_name_without_weights_says_how_to_train(home):
    with pytest.raises(FileNotFoundError) as e:
        zoo.load("vgg16-ecloss")
    assert "python -m zoo.train vgg16 --loss ecloss" in str(e.value)
    assert "weights=" in str(e.value)
    with pytest.raises(FileNotFoundError, match="python -m zoo.train vgg13 --loss softmax"):
        zoo.load("vgg13-softmax")


# ---------------------------------------------------------------------------- names

def test_list_models_shows_paper_variants_and_local_models(home):
    assert zoo.list_models() == sorted(PAPER + ["dlib-resnet"])   # + the reference model
    zoo.save(tiny())
    (home / "half-done").mkdir()               # a folder without weights is not a model
    (home / "half-done" / "config.json").write_text("{}")
    assert zoo.list_models() == sorted(PAPER + ["dlib-resnet", "tiny-a"])
    assert zoo.list_models("tiny*") == ["tiny-a"]
    assert zoo.list_models("vgg19-*") == ["vgg19-ecloss", "vgg19-softmax"]
    zoo.save(tiny(), name="vgg16-ecloss")      # trained paper variant: listed once, loadable
    assert zoo.list_models("vgg16*") == ["vgg16-ecloss", "vgg16-softmax"]
    assert torch.equal(out(zoo.load("vgg16-ecloss")), out(tiny()))


def test_registered_name_wins_over_same_named_folder_in_cwd(home, tmp_path, monkeypatch):
    zoo.save(tiny())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-a").mkdir()              # e.g. a training run folder
    assert torch.equal(out(zoo.load("tiny-a")), out(tiny()))
    with pytest.raises(FileNotFoundError, match="tiny-a/model.safetensors: weights file not"):
        zoo.load("./tiny-a")                   # an explicit path means the folder


def test_nothing_is_downloaded_or_created_at_import(tmp_path):
    h = tmp_path / "fresh_home"
    env = dict(os.environ, ZOO_HOME=str(h), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", "import zoo; print(len(zoo.list_models()))"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "7" and not h.exists()   # 6 paper variants + dlib-resnet
