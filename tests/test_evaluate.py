"""zoo.evaluate / zoo.compare end to end on tiny models trained on ORL in the test."""
import json
from pathlib import Path

import numpy as np
import pytest

from zoo.engine import TrainConfig, train

TINY = dict(arch="vgg13", preset="cpu", width=0.125, input_size=48, batch_norm=True,
            embedding_dim=32, epochs=2, batch_size=16, orl_num_train=6, progress=False,
            templates="50", tau=1.0, evaluate=False)


@pytest.fixture(scope="module")
def zoo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("zoo_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZOO_HOME", str(home))
    for loss in ("softmax", "ecloss"):
        train(TrainConfig(**TINY, loss=loss, out=str(home / "runs")))
    yield home
    mp.undo()


def test_evaluate_writes_metrics_figures_and_channel_parts(zoo_home, tmp_path):
    from zoo.evaluate import evaluate
    res = evaluate("vgg13-ecloss", out=str(tmp_path), max_images=20)
    m = json.loads((tmp_path / "metrics.json").read_text())
    ver, ex = m["verification"], m["explainability"]
    assert 0.4 <= ver["accuracy"] <= 1.0 and len(ver["fold_accuracies"]) == 10
    assert 0.0 <= ex["part_explainability"] <= 1.0 and 0.0 <= ex["location_consistency"] <= 1.0
    assert ex["num_images"] == 20 and ex["num_channels"] == 64
    assert np.asarray(ex["per_channel"]["A"]).shape == (64, 7)
    assert np.asarray(ex["per_channel"]["A"]).sum(1).max() <= 20
    for key in ("fig5", "fig6", "fig7", "histogram"):
        assert Path(res["figures"][key]).stat().st_size > 5000
    table = json.loads((zoo_home / "vgg13-ecloss" / "channel_parts.json").read_text())
    assert len(table["channel_part"]) == 64 and table["part_names"][3] == "eyes"
    report = (tmp_path / "report.md").read_text()
    assert "| PE |" in report
    # the one-view protocol a default export embeds with, from the same passes
    one = ver["one_view"]
    assert 0.4 <= one["accuracy"] <= 1.0 and -1 <= one["threshold"] <= 1
    assert f"threshold {one['threshold']:.4f}" in report and "One view" in report


def test_evaluate_cli_and_compare(zoo_home, tmp_path, monkeypatch, capsys):
    from zoo import compare, evaluate
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["vgg13-softmax", "--max-images", "10", "--no-figures"]) == 0
    assert (tmp_path / "runs/vgg13-softmax/evaluation/metrics.json").exists()
    assert compare.main(["vgg13-softmax", "vgg13-ecloss", "--out", "cmp"]) == 0
    text = (tmp_path / "cmp" / "compare.md").read_text()
    for title in ("Table 2", "Table 3", "Table 4", "Table 5"):
        assert title in text
    assert (tmp_path / "cmp" / "fig5_compare.png").stat().st_size > 5000
    assert evaluate.main(["no-such-model"]) == 2
    assert "unknown" in capsys.readouterr().err.lower()


def test_landmark_folder(tmp_path):
    from zoo.data.landmarks import LandmarkFolder
    from zoo.data.orl import ORLFaces
    ds = ORLFaces("heldout")
    for i in range(3):
        ds.load(i).save(tmp_path / f"face{i}.png")
        pts = ds.landmarks(i) + 1.0  # .pts files are 1-based
        body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
        if i < 2:
            (tmp_path / f"face{i}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
    folder = LandmarkFolder(tmp_path)
    assert len(folder) == 2 and [p.name for p in folder.missing] == ["face2.png"]
    np.testing.assert_allclose(folder.landmarks(0), ds.landmarks(0), atol=1e-3)
    with pytest.raises(FileNotFoundError, match="no image has a .pts"):
        LandmarkFolder(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else None)


def test_compare_reuses_an_evaluation_only_of_the_same_weights(tmp_path, monkeypatch):
    """A model retrained under its name is evaluated again: compare never reuses metrics.json
    of other weights (issue 23)."""
    import json

    from zoo import compare, evaluate
    from zoo.hub import WEIGHTS_SHA256
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "runs" / "m" / "evaluation"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"data": "orl", WEIGHTS_SHA256: "old",
                                                     "stored": True}))
    calls = []
    monkeypatch.setattr(evaluate, "evaluate",
                        lambda name, data: calls.append(name) or {"fresh": True})
    monkeypatch.setattr(compare, "stored_weights_sha256", lambda name: "new")
    assert compare._metrics("m", False, "orl") == {"fresh": True} and calls == ["m"]
    monkeypatch.setattr(compare, "stored_weights_sha256", lambda name: "old")
    assert compare._metrics("m", False, "orl")["stored"] and calls == ["m"]
