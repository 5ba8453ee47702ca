"""research.study: one tiny (variant, seed) run end to end, and the aggregation by hand
(research.study_tables)."""
import json

import pytest

from research import study, study_tables, study_variants


def test_aggregate_and_render_by_hand():
    runs = {"a": [{"verification": {"accuracy": 0.8}}, {"verification": {"accuracy": 0.9}}]}
    table = study_tables.aggregate(runs)
    mean, std, n = table["a"]["accuracy"]
    # the sample std (ddof=1): sqrt(((0.05)^2 + (0.05)^2) / 1) = 0.0707
    assert (mean, n) == (pytest.approx(0.85), 2) and std == pytest.approx(0.05 * 2 ** 0.5)
    assert table["a"]["PE"] is None
    text = study_tables.render(table, [0, 1])
    assert "| a | 0.8500 +- 0.0707 |" in text


def test_paired_differences_by_hand():
    acc = {"ref": [0.80, 0.90, 0.70], "b": [0.85, 1.00, 0.80]}
    runs = {v: [{"verification": {"accuracy": a}} for a in vals] for v, vals in acc.items()}
    d = study_tables.paired_differences(runs, [0, 1, 2], "ref", ["accuracy"])["b"]["accuracy"]
    # differences 0.05, 0.10, 0.10: mean 0.0833, sample std 0.0289, t = 5.0 with 2 df
    assert d[0] == pytest.approx(0.25 / 3) and d[1] == pytest.approx(0.0288675, rel=1e-5)
    assert d[2] == 3 and d[3] == pytest.approx(0.03775, abs=2e-4)


def test_study_main_tiny(tmp_path, monkeypatch):
    variants = {"softmax": {"loss": "softmax", "width": 0.125, "input_size": 48,
                            "batch_size": 32}}
    monkeypatch.setattr(study, "VARIANTS", variants)
    monkeypatch.setattr(study_variants, "VARIANTS", variants)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "unused"))  # main() sets it; restored after
    out = tmp_path / "s"
    assert study.main(["--seeds", "0", "--variants", "softmax", "--epochs", "1",
                       "--arch", "vgg13", "--out", str(out)]) == 0
    data = json.loads((out / "study.json").read_text())
    assert data["table"]["softmax"]["accuracy"][2] == 1
    assert (out / "zoo" / "study-vgg13-softmax-s0" / "model.safetensors").exists()
    assert "softmax" in (out / "study.md").read_text()


def test_summarize_from_committed_records(tmp_path):
    for v, accs in {"ref": [0.80, 0.90, 0.70], "b": [0.85, 1.00, 0.80]}.items():
        for seed, a in enumerate(accs):
            (tmp_path / f"{v}-s{seed}.json").write_text(json.dumps(
                {"variant": v, "seed": seed, "accuracy": a, "PE": None}))
    text = study_tables.summarize(tmp_path, ["accuracy", "PE"], reference="ref",
                                  variants=["ref", "b"])
    assert "| ref | 3 | 0.800 +- 0.100 | n/a |" in text
    assert "| b | 3 | 0.883 +- 0.104 | n/a |" in text
    # paired differences 0.05, 0.10, 0.10: +0.083 +- 0.029, t = 5.0 with 2 df, p = 0.038
    assert "| b | 0,1,2 | +0.083 +- 0.029 (p=0.038; Holm 0.038) | n/a |" in text
