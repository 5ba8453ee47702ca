"""Explanations ranked by evidence (runtime explain), and zoo.exporting.audit on real faces."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from export.explainer import FaceExplainer, overlay_size
from export.model_files import FEATURE_OUTPUT
from zoo.data.orl import orl_root
from zoo.exporting import audit as audit_mod
from zoo.exporting.model_export import export_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "export_tiny"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rank_zoo") / "tiny-ecloss"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py"))
    out = tmp_path_factory.mktemp("rank_out")
    export_model(folder, out, torchscript=False, log=None)
    return out


def _table(n, evidence, typical):
    return {"part_names": ["hair", "forehead", "cheek", "eyes", "nose", "mouth", "jaw"],
            "channel_part": [3] * n, "channel_evidence": list(map(float, evidence)),
            "channel_typical_peak": list(map(float, typical)),
            "channel_fixed": [int(e == 0) for e in evidence]}


def test_explain_ranks_by_evidence_not_peak(export_dir):
    face = orl_root() / "s6" / "1.pgm"
    plain = FaceExplainer(export_dir, parts=None)
    peaks = plain.explain(face, top_k=64).feature_maps.reshape(64, -1).max(1)
    strongest = int(np.argmax(peaks))
    # the strongest channel is a fixed-cell channel (evidence 0); the weakest firing channel has
    # the most evidence: it must be shown first, the strongest never among the first
    firing = np.flatnonzero(peaks > 0)
    weakest = int(firing[np.argmin(peaks[firing])])
    evidence = np.full(64, 0.5)
    evidence[strongest] = 0.0
    evidence[weakest] = 1.0
    typical = np.where(peaks > 0, peaks, 1.0)          # every channel at its typical strength
    table = _table(64, evidence, typical)
    x = FaceExplainer(export_dir, parts=table).explain(face, top_k=8)
    shown = [c.channel for c in x.channels]
    assert shown[0] == weakest and strongest not in shown
    assert x.channels[0].evidence == 1.0 and x.channels[0].table_part is not None
    # without evidence in the table the order is the raw peak (older exports)
    old = {k: v for k, v in table.items() if k in ("part_names", "channel_part")}
    assert FaceExplainer(export_dir, parts=old).explain(face, top_k=1).channels[0].channel == \
        strongest


def test_audit_counts_what_explain_shows(export_dir, tmp_path):
    faces = [orl_root() / "s6" / f"{k}.pgm" for k in (1, 2, 3)] + [orl_root() / "s8" / "1.pgm"]
    res = audit_mod.audit(export_dir, [str(p) for p in faces], top_k=4)
    assert res["images"] == 4 and res["shown_per_image"] == 4
    n = 4                                               # the fixture's target maps are 4 x 4
    assert res["uniform_ring_share"] == pytest.approx(12 / 16)
    # recompute the ring share from the reported cells: independent of the audit's own sum
    cells = [rc for item in res["per_image"] for rc in item["cells"]]
    on_ring = [r in (0, n - 1) or c in (0, n - 1) for r, c in cells]
    assert res["shown_ring_share"] == pytest.approx(np.mean(on_ring))
    # the channels shown are the ones explain shows
    explainer = FaceExplainer(export_dir)
    for item in res["per_image"]:
        x = explainer.explain(item["image"], top_k=4)
        assert item["channels"] == [c.channel for c in x.channels]
    for key in ("shown_fixed_here_share", "shown_fixed_in_table_share", "fixed_here_channel_share"):
        assert 0.0 <= res[key] <= 1.0
    # folders are walked; a missing path is named
    assert audit_mod.audit(export_dir, [str(orl_root() / "s6")], top_k=2)["images"] == 10
    with pytest.raises(FileNotFoundError, match="nope"):
        audit_mod.audit(export_dir, [str(tmp_path / "nope")])
    assert audit_mod.main([str(faces[0]), "--model", str(export_dir), "--json"]) == 0
    assert audit_mod.main([str(tmp_path / "nope"), "--model", str(export_dir)]) == 2
    json.dumps(res)                                     # JSON-serialisable for --json


def test_silent_channels_are_never_shown(export_dir):
    from export.channel_table import shown_channels
    # by hand: channel 0 has the most evidence but does not fire; 2 of 4 fire
    table = _table(4, [1.0, 0.5, 0.2, 0.9], [1.0] * 4)
    assert shown_channels([[0.0], [3.0], [1.0], [0.0]], table, top_k=3) == [1, 2]
    assert shown_channels(np.zeros((4, 1)), table) == []
    assert shown_channels([[0.0], [2.0], [5.0], [0.0]], None, top_k=8) == [2, 1]
    # on a black image (a few of the fixture's channels are silent on it): silent channels with
    # the most evidence still are not shown
    face = np.zeros((64, 64), np.uint8)
    peaks = FaceExplainer(export_dir, parts=None).explain(face, top_k=64) \
        .feature_maps.reshape(64, -1).max(1)
    silent = np.flatnonzero(peaks <= 0)
    assert 0 < len(silent) < 64, "the fixture should have both silent and firing channels"
    evidence = np.where(peaks <= 0, 1.0, 0.5)
    x = FaceExplainer(export_dir, parts=_table(64, evidence, np.ones(64))).explain(face, top_k=64)
    shown = [c.channel for c in x.channels]
    assert len(shown) == 64 - len(silent) and not set(shown) & set(silent.tolist())


def test_place_agreement_by_hand():
    from export.channel_table import place_agreement
    counts = [[0, 3, 1], [2, 2, 0]]                    # two channels, maps of 3 cells
    got = place_agreement([1, 2], counts)
    # channel 0 at its most frequent cell: 1; channel 1 where it never peaked: 0.5 / 2.5
    np.testing.assert_allclose(got, [1.0, 0.5 / 2.5])
    np.testing.assert_allclose(place_agreement([2, 0], counts), [1.5 / 3.5, 1.0])
    with pytest.raises(ValueError, match="cells must be in"):
        place_agreement([3, 0], counts)
    with pytest.raises(ValueError, match="cells for counts"):
        place_agreement([0], counts)


def test_rank_channels_weighs_the_place():
    from export.channel_table import rank_channels, validate_parts
    # equal evidence and strength; channel 0 peaks where it never does on faces, channel 1 at
    # its usual cell: with the place term channel 1 comes first, without it the order is by peak
    table = _table(2, [0.5, 0.5], [1.0, 1.0])
    table["channel_peak_cells"] = [[9, 0, 0, 0], [0, 0, 0, 9]]
    table = validate_parts(table, 2, "t")
    assert rank_channels([1.2, 1.0], table) == [0, 1]                    # no cells: as before
    assert rank_channels([1.2, 1.0], table, cells=[3, 3]) == [1, 0]
    assert rank_channels([1.2, 1.0], table, cells=[0, 3]) == [0, 1]
    bad = dict(table, channel_peak_cells=[[1, 2], [3]])
    with pytest.raises(ValueError, match="channel_peak_cells"):
        validate_parts(bad, 2, "t")
    with pytest.raises(ValueError, match="channel_peak_cells"):
        validate_parts(dict(table, channel_peak_cells=[[1, -2], [3, 0]]), 2, "t")


def test_explain_says_when_no_channel_fires(export_dir, tmp_path):
    """A face on which every channel is silent (the model's feature output zeroed): no channel
    is shown, and the picture is the input tile alone."""
    ex = FaceExplainer(export_dir)
    zero = np.zeros_like(ex.explain(np.zeros((64, 64), np.uint8), top_k=1).feature_maps)
    real_run = ex.model.run

    def silent_run(x, names):
        out = real_run(x, names)
        return [np.zeros_like(a) if n == FEATURE_OUTPUT else a for a, n in zip(out, names)]
    ex.model.run = silent_run
    x = ex.explain(np.zeros((64, 64), np.uint8), top_k=8, out=tmp_path / "none.png")
    assert x.channels == [] and zero.shape == x.feature_maps.shape
    assert x.overlay.size == overlay_size(0)
    assert (tmp_path / "none.png").exists()


def test_audit_skips_and_lists_undecodable_files(export_dir, tmp_path, capsys):
    """issue 23: audit treats undecodable files as pack, make-bin and prep do."""
    folder = tmp_path / "faces"
    folder.mkdir()
    for n in (1, 2):
        (folder / f"{n}.pgm").write_bytes((orl_root() / "s6" / f"{n}.pgm").read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    res = audit_mod.audit(export_dir, [str(folder)], top_k=2)
    assert res["images"] == 2 and res["num_skipped"] == 1
    assert res["skipped"][0]["image"].endswith("broken.jpg")
    assert audit_mod.main([str(folder), "--model", str(export_dir)]) == 0
    assert "skipped 1 undecodable images" in capsys.readouterr().err
