"""research.shapley_estimators on synthetic games with known Shapley values (no model).

A game is given as its 256 values v(S) by bitmask, like a collect() file: v(S) = 1 - (the
difference S leaves), so each player's share of the difference is minus its Shapley value.
"""
import json

import numpy as np
import pytest

from export.part_game import PLAYERS
from research.shapley_estimators import (
    ALL_MEMBERS,
    ESTIMATES,
    analyse,
    exact_shapley,
    main,
    markdown,
)

N = len(PLAYERS)
EYES, NOSE = PLAYERS.index("eyes"), PLAYERS.index("nose")
# complement-closed coalition sets and antithetic permutations: exact up to order-2 games
EXACT_ON_ORDER_2 = ("pairwise", "kernel {1,7}", "kernel {1,2,6,7}", "perm x4", "perm x6")


def game(additive, pairs=(), triples=()):
    """256 values of v(S) = 1 - sum_{i in S} a_i - sum b over the pairs / triples inside S."""
    m = ALL_MEMBERS
    diff = m.astype(float) @ np.asarray(additive, float)
    for (i, j), b in pairs:
        diff += b * (m[:, i] & m[:, j])
    for (i, j, k), c in triples:
        diff += c * (m[:, i] & m[:, j] & m[:, k])
    return (1.0 - diff).tolist()


def row(values, kind="orl-diff", part=None, name="p"):
    r = {"pair": name, "kind": kind, "similarity": values[-1], "values": values}
    if part:
        r["part"] = part
    return r


# order 2: eyes 0.05 and an eyes-nose interaction 0.04, so the exact shares are
# eyes 0.07, nose 0.03 + 0.02 = 0.05, the rest their additive parts
ADDITIVE = [0.010, 0.004, 0.006, 0.050, 0.030, 0.008, 0.002, 0.001]
ORDER_2 = game(ADDITIVE, pairs=[((EYES, NOSE), 0.04)])
# order 3: eyes 0.04 alone; hair, forehead and cheek only together (0.09, 0.03 each). The
# pairwise estimate gives each of the three half of it (0.045) and ranks hair first.
ORDER_3_ADDITIVE = [0, 0, 0, 0.04, 0.001, 0.001, 0.001, 0.001]
ORDER_3 = game(ORDER_3_ADDITIVE, triples=[((0, 1, 2), 0.09)])


def test_exact_shapley_of_the_synthetic_games():
    share = -exact_shapley(ORDER_2)
    want = np.array(ADDITIVE)
    want[EYES] += 0.02
    want[NOSE] += 0.02
    assert np.allclose(share, want)
    share3 = -exact_shapley(ORDER_3)
    assert np.allclose(share3[:3], 0.03) and np.isclose(share3[EYES], 0.04)


def test_estimators_exact_on_order_2_report_zero_error_and_the_exact_ranking():
    summary = analyse({"rows": [row(ORDER_2)]})
    for name in EXACT_ON_ORDER_2:
        s = summary[name]["all"]
        assert s["max_abs_error_median"] == pytest.approx(0, abs=1e-12), name
        assert s["first_agree"] == 1 and s["regret_median"] == pytest.approx(0, abs=1e-12)
        assert s["relative_regret_good"] == 1 and s["regret_pairs"] == 1
    for name in set(ESTIMATES) - set(EXACT_ON_ORDER_2):   # not complement-closed: biased
        assert summary[name]["all"]["max_abs_error_median"] > 1e-4, name


def test_coalition_counts():
    summary = analyse({"rows": [row(ORDER_2)]})
    counts = {e: s["all"]["coalitions"] for e, s in summary.items()}
    assert counts["pairwise"] == 17 and counts["kernel {1,7}"] == 17
    assert counts["kernel {1,2}"] == 37 and counts["kernel {1,2,7}"] == 45
    assert counts["kernel {1,6,7}"] == 45 and counts["kernel {1,2,6,7}"] == 73
    assert 0 < counts["perm x4"] <= counts["perm x6"] < 2 ** N


def test_third_order_interaction_fools_pairwise():
    s = analyse({"rows": [row(ORDER_3)]})["pairwise"]["all"]
    assert s["first_agree"] == 0
    assert s["max_abs_error_median"] > 0.003
    # exact top: eyes 0.04; pairwise's top (hair) has the exact share 0.03
    assert s["regret_median"] == pytest.approx(0.01)
    assert s["relative_regret_median"] == pytest.approx(0.01 / 0.134)
    assert s["relative_regret_good"] == 0


def test_regret_and_swap_verdicts_skip_pairs_below_the_minimum_change():
    small = (1 - 0.1 * (1 - np.array(ORDER_3))).tolist()   # the same game, 1 - sim = 0.013
    rows = [row(ORDER_3, "orl-swap", part="eyes", name="big"),
            row(small, "orl-swap", part="eyes", name="small")]
    s = analyse({"rows": rows})["pairwise"]
    assert s["orl-swap"]["pairs"] == 2 and s["orl-swap"]["first_agree"] == 0
    assert s["orl-swap"]["regret_pairs"] == 1
    assert s["orl-swap"]["regret_median"] == pytest.approx(0.01)       # not 0.001
    assert s["orl-swap"]["swaps"] == 1
    assert s["orl-swap"]["swap_first"] == 0 and s["orl-swap"]["swap_first_exact"] == 1
    only_small = analyse({"rows": rows[1:]})["pairwise"]["all"]
    assert only_small["regret_pairs"] == 0 and only_small["regret_median"] is None
    assert only_small["relative_regret_median"] is None and only_small["swaps"] == 0
    assert "| - |" in markdown(analyse({"rows": rows[1:]}))


def test_analyse_command_reads_a_collect_file(tmp_path, capsys):
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"model": "synthetic", "players": list(PLAYERS),
                                  "rows": [row(ORDER_2, "orl-same"), row(ORDER_3, "dev-diff")]}))
    out = tmp_path / "summary.json"
    assert main(["analyse", str(values), "--out", str(out), "--markdown"]) == 0
    table = capsys.readouterr().out
    assert "| pairwise | 17 | 1/2 |" in table and "| orl-same | dev-diff |" in table
    summary = json.loads(out.read_text())["summary"]
    assert list(summary["kernel {1,2,6,7}"]) == ["orl-same", "dev-diff", "all"]


def test_missing_coalition_values_are_refused():
    values = list(ORDER_2)
    values[5] = None
    with pytest.raises(ValueError, match="256"):
        analyse({"rows": [row(values)]})
