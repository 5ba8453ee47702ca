"""verify(explain=True): part evidence by intervention (export.match_evidence) on the committed
trained fixture and ORL faces: the sums, exact Shapley values against a brute-force average over
orderings, the estimators, given landmarks, the part-swap game, the CLI and the picture."""
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.match_evidence import MatchExplainer, PairEvidence
from export.part_game import PLAYERS
from export.verifier import FaceVerifier
from zoo.data.orl import ORLFaces, orl_landmark_table, orl_root
from zoo.exporting.model_export import export_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "export_tiny"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("me_zoo") / "tiny-ecloss"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py"))
    out = tmp_path_factory.mktemp("me_out")
    export_model(folder, out, torchscript=False, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def faces():
    paths = ORLFaces("heldout").paths
    return [str(paths[0]), str(paths[1]), str(paths[12])]   # two of one person, one other


def test_shares_sum_to_the_difference(exported, faces):
    v = FaceVerifier(exported, device="cpu")
    for a, b in [(faces[0], faces[1]), (faces[0], faces[2])]:
        plain = v.verify(a, b)
        r = v.verify(a, b, explain=True)
        ev = r.evidence
        assert isinstance(ev, PairEvidence)
        assert r.similarity == pytest.approx(plain.similarity, abs=1e-5)
        assert ev.similarity == r.similarity and ev.same == r.same
        assert sorted(p.part for p in ev.parts) == sorted(PLAYERS[:-1])
        diffs = [p.difference for p in ev.parts]
        assert diffs == sorted(diffs, reverse=True)
        assert sum(diffs) + ev.other == pytest.approx(1 - ev.similarity, abs=1e-9)
        assert all(-1 <= p.hidden_similarity <= 1 for p in ev.parts)
        assert ev.channel_view is not None and isinstance(ev.agree, bool)
        # the channel view's shares sum to 1 - similarity too (its residual aside)
        cv = ev.channel_view
        assert (sum(p.channel_difference for p in ev.parts) + cv.residual_difference
                == pytest.approx(1 - cv.similarity, abs=1e-9))
        json.dumps(ev.to_dict())
    same = v.verify(faces[0], faces[1], explain=True).similarity
    other = v.verify(faces[0], faces[2], explain=True).similarity
    assert same > other


def _shapley_by_orderings(n, value):
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        mask = 0
        for i in order:
            phi[i] += value[mask | (1 << i)] - value[mask]
            mask |= 1 << i
    return phi / math.factorial(n)


def test_exact_shapley_values_of_a_real_pair(exported, faces):
    """The exact estimator against the average over all 8! orderings of the same game values,
    and the pairwise estimate's error against it (reported, bounded loosely)."""
    exact = MatchExplainer(exported, device="cpu", estimator="exact")
    ev = exact.explain(faces[0], faces[2])
    g = ev.game
    index = g.members.astype(np.int64) @ (1 << np.arange(len(PLAYERS)))
    value = np.empty(2 ** len(PLAYERS))
    value[index] = g.values
    np.testing.assert_allclose(g.shapley, _shapley_by_orderings(len(PLAYERS), value), atol=1e-12)
    for est in ("kernel", "pairwise"):
        approx = MatchExplainer(exported, device="cpu", estimator=est).explain(faces[0], faces[2])
        assert approx.similarity == pytest.approx(ev.similarity, abs=1e-6)
        assert approx.game.shapley.sum() == pytest.approx(g.shapley.sum(), abs=1e-9)
        err = np.abs(approx.game.shapley - g.shapley).max()
        assert err < 0.5 * np.abs(g.shapley).max(), (est, err)


def test_given_landmarks_and_bad_ones(exported, faces, tmp_path):
    table, _ = orl_landmark_table()
    root = orl_root()
    keys = [str(Path(f).relative_to(root)) for f in faces[:2]]
    pts = [table[k] for k in keys]
    v = FaceVerifier(exported, device="cpu")
    ev = v.verify(faces[0], faces[1], explain=True, landmarks=pts).evidence
    assert ev.landmarks == ("given", "given")
    pts_file = tmp_path / "a.pts"
    pts_file.write_text("version: 1\nn_points: 68\n{\n"
                        + "".join(f"{x + 1} {y + 1}\n" for x, y in pts[0]) + "}\n")
    again = v.verify(faces[0], faces[1], explain=True, landmarks=[pts_file, pts[1]]).evidence
    assert again.similarity == ev.similarity
    np.testing.assert_array_equal(again.part_masks, ev.part_masks)
    bad = tmp_path / "bad.pts"
    bad.write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match=r"bad\.pts: expected 68"):
        v.verify(faces[0], faces[1], explain=True, landmarks=[bad, None])
    with pytest.raises(ValueError, match="a pair"):
        v.verify(faces[0], faces[1], explain=True, landmarks=[pts[0]])


def test_part_swap_game_on_orl(exported):
    """The swapped part comes first in the intervention view (given landmarks: the check of
    the game itself; the runtime's own landmarks are scored in docs/results.md)."""
    from zoo.metrics.faithfulness import SWAP_PARTS, swap_part
    table, _ = orl_landmark_table()
    root = orl_root()
    keys = ["s6/1.pgm", "s8/1.pgm", "s13/2.pgm", "s14/3.pgm", "s15/1.pgm", "s16/4.pgm"]
    imgs = {k: Image.open(root / k).convert("RGB") for k in keys}
    explainer = MatchExplainer(exported, device="cpu", fill="mean")
    moved = first = 0
    for a, b in zip(keys, keys[1:] + keys[:1]):
        for part in SWAP_PARTS:
            swapped = swap_part(imgs[a], table[a], imgs[b], table[b], part).image
            ev = explainer.explain(imgs[a], swapped, landmarks=(table[a], table[a]))
            if 1 - ev.similarity >= 0.02:
                moved += 1
                first += ev.parts[0].part == part
    assert moved >= 4 and first / moved >= 0.8, (first, moved)


def _cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "export.runtime", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def test_cli_prints_the_table_and_writes_the_picture(exported, faces, tmp_path):
    api = FaceVerifier(exported, device="cpu").verify(faces[0], faces[2], explain=True)
    pic = tmp_path / "why.png"
    r = _cli("verify", faces[0], faces[2], "--model", exported, "--device", "cpu", "--explain",
             pic)
    assert r.returncode == 0, r.stderr
    assert str(api) in r.stdout and api.evidence.table() in r.stdout
    with Image.open(pic) as im:
        assert im.format == "PNG" and im.size == api.evidence.render().size
    r = _cli("verify", faces[0], faces[2], "--model", exported, "--device", "cpu", "--json",
             "--explain", tmp_path / "why.jpg")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["evidence"] == json.loads(json.dumps(api.evidence.to_dict()))
    assert got["picture"].endswith("why.jpg")
    r = _cli("verify", faces[0], faces[2], "--model", exported, "--explain", tmp_path / "w.png",
             "--landmarks", tmp_path / "missing.pts", tmp_path / "missing.pts")
    assert r.returncode == 2 and "missing.pts" in r.stderr and "Traceback" not in r.stderr


def test_picture_shows_the_parts(exported, faces):
    ev = FaceVerifier(exported, device="cpu").verify(faces[0], faces[2], explain=True).evidence
    im = ev.render()
    a = np.asarray(im).astype(int)
    assert im.mode == "RGB" and im.size[0] >= 500 and im.size[1] > 300 + 80 * len(ev.parts)
    assert a.std() > 20
    # the part tiles are tinted with the part colours where the faces are grey
    tiles = a[300:300 + 80 * len(ev.parts), 12:180]
    assert (np.abs(tiles[..., 0] - tiles[..., 2]) > 40).mean() > 0.01


def test_swap_game_runner(exported, tmp_path):
    """zoo.swap_game: deterministic pairs of different people, one row per swap with both
    views, scores that count what the rows say; a folder of faces with .pts files."""
    from zoo.swap_game import folder_faces, orl_faces, pair_faces, play_swap_game, summarise
    faces = orl_faces("heldout")
    pairs = pair_faces(faces, 3, seed=4)
    assert pairs == pair_faces(faces, 3, seed=4) and len(pairs) == 3
    assert all(faces[a][1] != faces[b][1] for a, b in pairs)
    rows = play_swap_game(MatchExplainer(exported, device="cpu", estimator="pairwise"), faces,
                          pairs[:1], parts=("eyes",))
    assert len(rows) == 1 and rows[0]["part"] == "eyes" and "channel_difference" in rows[0]
    assert rows[0]["ranked_first"] == (max(rows[0]["difference"],
                                           key=rows[0]["difference"].get) == "eyes")
    s = summarise(rows, min_change=0.0)
    assert s["intervention"]["n_counted"] == 1
    assert s["intervention"]["n_first"] == int(rows[0]["ranked_first"])
    table, _ = orl_landmark_table()
    for key, name in (("s6/1.pgm", "ann__1"), ("s6/2.pgm", "ann__2"), ("s8/1.pgm", "bob")):
        Image.open(orl_root() / key).save(tmp_path / f"{name}.png")
        (tmp_path / f"{name}.pts").write_text(
            "version: 1\nn_points: 68\n{\n"
            + "".join(f"{x + 1} {y + 1}\n" for x, y in table[key]) + "}\n")
    got = folder_faces(tmp_path)
    assert sorted(f[1] for f in got) == ["ann", "ann", "bob"]
    for a, b in pair_faces(got, 4):
        assert {got[a][1], got[b][1]} == {"ann", "bob"}


def test_channels_only_swap_game_plays_every_pair(exported):
    """The channel-view-only mode (the channel studies of docs/results.md) plays each pair and
    part, with the same rows as the full game's channel view (it once replaced the face list
    with the pair it had just located, so only the first pair could be played)."""
    from zoo.swap_game import orl_faces, pair_faces, play_swap_game
    faces = orl_faces("heldout")
    pairs = pair_faces(faces, 3, seed=4)
    ex = MatchExplainer(exported, device="cpu", estimator="pairwise")
    only = play_swap_game(ex, faces, pairs, parts=("eyes", "nose"), channels_only=True)
    assert [(r["a"], r["part"]) for r in only] == [(faces[a][0], p) for a, _ in pairs
                                                    for p in ("eyes", "nose")]
    full = play_swap_game(ex, faces, pairs[1:2], parts=("nose",))
    row = only[3]
    assert row["b"] == faces[pairs[1][1]][0]
    assert row["similarity"] == pytest.approx(full[0]["similarity"], abs=1e-5)
    assert row["channel_difference"] == pytest.approx(full[0]["channel_difference"], abs=1e-6)
    assert row["channel_ranked_first"] == full[0]["channel_ranked_first"]
