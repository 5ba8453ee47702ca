"""Issue 23: retraining a registered name, --resume against the checkpoint's options, and the
checks a run makes before its first step (tiny 5-step runs on 40 ORL images)."""
import json
import time
from pathlib import Path

import pytest

import zoo
from export.model_dir import ExportedModel, ModelDirError
from export.part_masks import PART_NAMES
from zoo import hub
from zoo.engine import train
from zoo.exporting.model_export import export_model
from zoo.metrics.verification import kfold_accuracy
from zoo.train import main as train_main
from zoo.train_config import TrainConfig

TINY = dict(arch="vgg13", preset="cpu", width=1 / 16, input_size=32, batch_norm=False,
            embedding_bn=False, embedding_dim=16, flip=False, register=False, evaluate=False,
            progress=False, orl_num_train=4, batch_size=8, lr=0.05, templates="400", tau=1.0,
            epochs=1)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "zoo_home"
    monkeypatch.setenv("ZOO_HOME", str(h))
    return h


def _table(folder, sha):
    channels = zoo.load(folder).feature_channels
    table = {"part_names": list(PART_NAMES), "channel_part": [0] * channels,
             "weights_sha256": sha}
    (folder / "channel_parts.json").write_text(json.dumps(table))
    return table


def test_retraining_a_registered_name_refuses_or_replaces_and_drops_the_stale_table(home,
                                                                                   tmp_path):
    runs = str(tmp_path / "runs")
    first = train(TrainConfig(**{**TINY, "register": True}, out=runs, seed=0))
    folder = home / "vgg13-ecloss"
    assert first["registered"] == str(folder)
    old_sha = hub.file_sha256(folder / "model.safetensors")
    old_table = _table(folder, old_sha)

    with pytest.raises(ValueError, match="vgg13-ecloss is already registered at .*--overwrite"):
        train(TrainConfig(**{**TINY, "register": True}, out=runs, seed=1))
    assert hub.file_sha256(folder / "model.safetensors") == old_sha  # untouched

    train(TrainConfig(**{**TINY, "register": True}, out=runs, seed=1, overwrite=True))
    new_sha = hub.file_sha256(folder / "model.safetensors")
    assert new_sha != old_sha
    assert not (folder / "channel_parts.json").exists()  # the old weights' table is gone

    # the old table put back by hand: export refuses it, naming what to rerun
    (folder / "channel_parts.json").write_text(json.dumps(old_table))
    with pytest.raises(ValueError, match=r"channel_parts.json: computed from other weights .*"
                                         r"python -m zoo.evaluate vgg13-ecloss"):
        export_model("vgg13-ecloss", tmp_path / "export", featuremap=False, torchscript=False,
                     detector=False, log=None)
    # a table of these weights is exported, and the export records the weights' hash
    _table(folder, new_sha)
    res = export_model("vgg13-ecloss", tmp_path / "export", featuremap=False,
                       torchscript=False, detector=False, log=None)
    assert res.metadata["weights_sha256"] == new_sha
    assert json.loads(res.metadata["channel_parts"])["weights_sha256"] == new_sha


def test_the_cli_refuses_a_retrain_in_one_line(home, tmp_path, capsys):
    args = ["vgg13", "--width", "0.0625", "--input-size", "32", "--bn", "false",
            "--embedding-dim", "16", "--no-eval", "--no-progress", "--batch-size", "8",
            "--epochs", "1", "--max-steps", "1", "--preset", "cpu", "--out", str(tmp_path)]
    assert train_main(args) == 0
    capsys.readouterr()
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already registered" in err[0] and "--overwrite" in err[0]
    assert train_main(args + ["--overwrite"]) == 0
    assert "this run replaces the registered vgg13-ecloss" in capsys.readouterr().out


def test_the_runtime_refuses_an_embedded_table_of_other_weights(tmp_path):
    import onnx
    fixture = Path(__file__).resolve().parent / "fixtures" / "export_tiny"
    res = export_model(fixture, tmp_path, featuremap=False, torchscript=False, detector=False,
                       log=None)
    assert res.metadata["weights_sha256"] == hub.file_sha256(fixture / "model.safetensors")
    ExportedModel(tmp_path, "embedding.onnx", "cpu", None)  # the committed table has no hash: opens
    path = tmp_path / "embedding.onnx"
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "channel_parts":  # a table of other weights, embedded by hand
            prop.value = json.dumps({**json.loads(prop.value), "weights_sha256": "ab" * 32})
    onnx.save(model, str(path))
    with pytest.raises(ModelDirError, match=r"embedding.onnx: the embedded channel table was "
                                            r"computed from other weights .*zoo.evaluate"):
        ExportedModel(tmp_path, "embedding.onnx", "cpu", None)


def test_resume_with_more_epochs_continues_on_a_rebuilt_schedule(tmp_path):
    out = str(tmp_path)
    one = train(TrainConfig(**TINY, out=out))
    assert one["steps"] == 5
    two = train(TrainConfig(**{**TINY, "epochs": 3}, out=out, resume=True))
    assert two["steps"] == 15 and two["epochs"] == 3
    rows = [r.split(",") for r in (tmp_path / "vgg13-ecloss" / "log.csv").read_text()
            .splitlines()[1:]]
    lrs = [float(r[7]) for r in rows]
    assert len(lrs) == 15 and lrs[-1] < 1e-3  # the rebuilt schedule decays to its end
    # more epochs than done, on the checkpoint of the 3-epoch run: fewer is refused
    with pytest.raises(ValueError, match="--epochs 2 is fewer than the 3 epochs"):
        train(TrainConfig(**{**TINY, "epochs": 2}, out=out, resume=True))


def test_resume_with_a_changed_loss_or_tau_refuses_naming_each_option(tmp_path):
    out = str(tmp_path)
    train(TrainConfig(**TINY, out=out, loss="softmax", name="r"))
    with pytest.raises(ValueError) as info:
        train(TrainConfig(**{**TINY, "tau": 0.5}, out=out, loss="ecloss", name="r",
                          resume=True))
    msg = str(info.value)
    assert "--loss: checkpoint 'softmax', now 'ecloss'" in msg
    assert "--tau: checkpoint 1.0, now 0.5" in msg
    assert "--lr" not in msg  # the same lr is not listed


def test_a_missing_val_or_data_fails_before_training(tmp_path):
    t0 = time.time()
    with pytest.raises(FileNotFoundError, match="--val .*missing.bin: no such file"):
        train(TrainConfig(**{**TINY, "evaluate": True}, out=str(tmp_path),
                          val=["orl", str(tmp_path / "missing.bin")]))
    with pytest.raises(FileNotFoundError, match="--data .*nowhere"):
        train(TrainConfig(**TINY, out=str(tmp_path), data=str(tmp_path / "nowhere")))
    assert time.time() - t0 < 10
    assert not (tmp_path / "vgg13-ecloss" / "checkpoint.pt").exists()


def test_an_unwritable_out_and_a_bad_config_file_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert train_main(["vgg13", "--out", str(blocker / "runs"), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    bad = tmp_path / "cfg.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="--config .*cfg.json: not valid JSON"):
        train_main(["vgg13", "--config", str(bad)])
    with pytest.raises(SystemExit, match="--config .*absent.json: cannot read it"):
        train_main(["vgg13", "--config", str(tmp_path / "absent.json")])


def test_a_bin_with_fewer_pairs_than_folds_is_an_error():
    with pytest.raises(ValueError, match="4 pairs: the 10-fold protocol needs at least 10"):
        kfold_accuracy([0.9, 0.8, 0.1, 0.2], [True, True, False, False])
