"""zoo.study: one tiny (variant, seed) run end to end, and the aggregation by hand."""
import json

import pytest

from zoo import study


def test_aggregate_and_render_by_hand():
    runs = {"a": [{"verification": {"accuracy": 0.8}}, {"verification": {"accuracy": 0.9}}]}
    table = study.aggregate(runs)
    mean, std, n = table["a"]["accuracy"]
    assert (mean, n) == (pytest.approx(0.85), 2) and std == pytest.approx(0.05)
    assert table["a"]["PE"] is None
    text = study.render(table, [0, 1])
    assert "| a | 0.8500 +- 0.0500 |" in text


def test_study_main_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "VARIANTS", {"softmax": {"loss": "softmax", "width": 0.125,
                                                        "input_size": 48, "batch_size": 32}})
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "unused"))  # main() sets it; restored after
    out = tmp_path / "s"
    assert study.main(["--seeds", "0", "--variants", "softmax", "--epochs", "1",
                       "--arch", "vgg13", "--out", str(out)]) == 0
    data = json.loads((out / "study.json").read_text())
    assert data["table"]["softmax"]["accuracy"][2] == 1
    assert (out / "zoo" / "study-vgg13-softmax-s0" / "model.safetensors").exists()
    assert "softmax" in (out / "study.md").read_text()
