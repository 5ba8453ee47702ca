"""zoo.channel_parts: the shown-channel measures ranked by a table fitted on other faces
(zoo.evaluate's --fit) agree with the same-faces numbers when the fit faces are the scored
ones, and cross-fitting ranks each group by the table of the others."""
import numpy as np
import pytest

from zoo.channel_parts import (
    channel_parts_table,
    cross_fitted_shown,
    explainability_metrics,
    shown_measures,
)


def _collection(seed=0, n_img=8, c=6, n=7, s=56):
    rng = np.random.default_rng(seed)
    fmaps = rng.random((n_img, c, n, n)) ** 8
    shifted = np.roll(fmaps, 1, axis=-1)
    ious = rng.random((n_img, c, 7)) * 0.5
    prec = rng.random((n_img, c, 7))
    return {"fmaps": fmaps, "ious": ious, "precisions": prec,
            "landmarks": rng.random((n_img, 68, 2)) * s, "probe_maps": np.zeros((3, c, n, n)),
            "shift_maps": (fmaps, shifted)}, s


def test_same_faces_table_gives_the_evaluations_numbers():
    col, s = _collection()
    m = explainability_metrics(col["fmaps"], col["ious"], col["landmarks"], s, col["probe_maps"],
                               col["shift_maps"], col["precisions"])
    dep = m["input_dependence"]
    again = shown_measures(col["fmaps"], channel_parts_table(m), col["shift_maps"])
    for key in ("shown_ring_share", "shown_shift_follows", "shown_shift_stays"):
        assert again[key] == pytest.approx(dep[key])


def test_cross_fit_ranks_each_group_by_the_others_table():
    col, s = _collection(1)
    groups = [[0, 1, 2, 3], [4, 5, 6, 7]]
    got = cross_fitted_shown(col, groups, s)
    tables = []
    for g, other in ((groups[0], groups[1]), (groups[1], groups[0])):
        sub = {k: (tuple(x[other] for x in v) if k == "shift_maps" else
                   v if k == "probe_maps" else v[other]) for k, v in col.items()}
        m = explainability_metrics(sub["fmaps"], sub["ious"], sub["landmarks"], s,
                                   sub["probe_maps"], sub["shift_maps"], sub["precisions"])
        tables += [channel_parts_table(m)] * len(g)
    want = shown_measures(col["fmaps"], tables, col["shift_maps"])
    assert got == pytest.approx(want)
    with pytest.raises(ValueError, match="cover every face"):
        cross_fitted_shown(col, [[0, 1]], s)
