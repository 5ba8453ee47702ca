"""The 14 x 14 study's machinery: disjoint ORL test folds, the controls (permuted templates,
cell-shuffled maps, an untrained network) and records paired by (fold, seed)."""
import json

import numpy as np
import pytest

from research import study, study_tables, study_variants
from research.ecloss_variants import variant_templates
from zoo.data.orl import orl_identity_splits
from zoo.metrics.controls import shuffle_map_cells


def test_test_folds_are_disjoint_and_never_hold_out_a_validation_identity():
    held = []
    val0 = orl_identity_splits(27, 5, seed=0)[1]
    for fold in range(4):
        train, val, test = orl_identity_splits(27, 5, seed=0, fold=fold)
        assert (len(train), len(val), len(test)) == (27, 5, 8)
        assert set(train) | set(val) | set(test) == set(range(1, 41))
        assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
        assert val == val0                                   # chosen on, never tested on
        held.append(set(test))
    assert sum(len(h) for h in held) == len(set().union(*held)) == 32   # disjoint
    assert orl_identity_splits(27, 5, 0, 0) == orl_identity_splits(27, 5, 0)
    with pytest.raises(ValueError, match="fold must be in 0..3"):
        orl_identity_splits(27, 5, 0, fold=4)
    with pytest.raises(ValueError, match="fold must be in 0..2"):
        orl_identity_splits(25, 5, 0, fold=3)              # 35 // 10 = 3 folds
    with pytest.raises(ValueError, match="fold"):
        orl_identity_splits(27, 5, 0, fold=-1)


def test_permuted_templates_keep_values_and_lose_shape():
    ref = variant_templates(7, 400, 2.0, 1.0, peaks="all").reshape(400, -1)
    got = variant_templates(7, 400, 2.0, 1.0, peaks="permuted").reshape(400, -1)
    np.testing.assert_array_equal(np.sort(ref, 1), np.sort(got, 1))   # same values per template
    np.testing.assert_array_equal(got[-1], ref[-1])                    # negative: constant
    one_peak = ref[:49]
    # a one-peak template's peak is no longer where it was on (almost) every template
    moved = (got[:49].argmax(1) != one_peak.argmax(1)).mean()
    assert moved > 0.9
    # and the shapes are not smooth any more: neighbouring cells differ more on average
    def roughness(t):
        g = t.reshape(-1, 7, 7)
        return np.abs(np.diff(g, axis=2)).mean()
    assert roughness(got[:-1]) > 2 * roughness(ref[:-1])
    np.testing.assert_array_equal(got, variant_templates(7, 400, 2.0, 1.0, peaks="permuted")
                                  .reshape(400, -1))                  # deterministic


def test_shuffled_cells_keep_values_and_reach_chance_level():
    maps = np.zeros((4000, 1, 7, 7))
    maps[:, 0, 0, 0] = 5.0                   # every map peaks at the same corner cell
    maps[:, 0, 3, 3] = 1.0
    out = shuffle_map_cells(maps, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(out.reshape(4000, -1), 1),
                                  np.sort(maps.reshape(4000, -1), 1))
    cells = out.reshape(4000, -1).argmax(1)
    share = np.bincount(cells, minlength=49) / 4000
    # uniform over 49 cells: 1/49 = 0.0204 each; binomial sd sqrt(p(1-p)/4000) = 0.0022
    assert np.abs(share - 1 / 49).max() < 6 * 0.0022


def test_check_variant_names_controls():
    assert study_variants.check_variant("softmax+shuffled") == "softmax+shuffled"
    assert study_variants.check_variant("untrained") == "untrained"
    with pytest.raises(ValueError, match="unknown study variant 'nope'"):
        study_variants.check_variant("nope")


def test_summarize_pairs_runs_by_fold_and_seed(tmp_path):
    recs = {("ref", 0): 0.80, ("ref", 1): 0.70, ("b", 0): 0.90, ("b", 1): 0.75}
    for (v, fold), a in recs.items():
        name = f"{v}-f{fold}-s0.json" if fold else f"{v}-s0.json"
        (tmp_path / name).write_text(json.dumps({"variant": v, "seed": 0, "fold": fold,
                                                 "accuracy": a}))
    text = study_tables.summarize(tmp_path, ["accuracy"], reference="ref", variants=["ref", "b"])
    assert "| ref | 2 | 0.750 +- 0.071 |" in text
    # differences 0.10 and 0.05: mean 0.075, sample std 0.035, t = 3 with 1 df, p = 0.20
    assert "| b | f0s0,f1s0 | +0.075 +- 0.035 (p=0.2; Holm 0.2) |" in text


def test_study_main_folds_and_controls_tiny(tmp_path, monkeypatch):
    tiny = {"width": 0.125, "input_size": 48, "batch_size": 32}
    variants = {"softmax": {"loss": "softmax", **tiny},
                "untrained": {"loss": "ecloss", "max_steps": 0, **tiny}}
    monkeypatch.setattr(study, "VARIANTS", variants)
    monkeypatch.setattr(study_variants, "VARIANTS", variants)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "unused"))
    out, res = tmp_path / "s", tmp_path / "r"
    assert study.main(["--seeds", "0", "--folds", "1", "--epochs", "1", "--arch", "vgg13",
                       "--variants", "softmax", "softmax+shuffled", "untrained",
                       "--num-train", "27", "--num-val", "5", "--out", str(out),
                       "--results", str(res)]) == 0
    plain = json.loads((res / "softmax-f1-s0.json").read_text())
    shuffled = json.loads((res / "softmax+shuffled-f1-s0.json").read_text())
    untrained = json.loads((res / "untrained-f1-s0.json").read_text())
    assert plain["fold"] == shuffled["fold"] == 1
    # the shuffle touches only the maps: same network, same verification numbers
    assert shuffled["accuracy"] == plain["accuracy"]
    assert shuffled["peaks"] != plain["peaks"] or shuffled["PE"] != plain["PE"]
    assert untrained["final MI"] is None                       # never trained
    assert (out / "zoo" / "study-vgg13-softmax-f1-s0" / "model.safetensors").exists()
    cfg = json.loads((out / "zoo" / "study-vgg13-softmax-f1-s0" / "config.json").read_text())
    assert cfg["training"]["orl_fold"] == 1 and cfg["training"]["orl_num_val"] == 5
