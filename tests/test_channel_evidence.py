"""Per-part evidence for a verification (export.channel_evidence, head.onnx, verify --explain).

The decomposition is checked against independent float64 computations on hand-made terms
(brute-force Shapley values over all orderings of the groups, cosines of group sums), then the
exported head.onnx against numpy on the committed trained fixture's weights, then the runtime
API, the CLI and the picture on held-out ORL faces.
"""
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from safetensors.numpy import load_file

from export.channel_evidence import ChannelEvidence, ChannelExplainer, decompose, part_groups
from export.model_dir import HEAD_FILE, ModelDirError
from export.verifier import FaceVerifier
from zoo.data.orl import ORLFaces, orl_root
from zoo.exporting.model_export import export_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "export_tiny"
NAMES = ["hair", "eyes", "nose"]


def _brute_cos(x, y):
    nx, ny = max(np.linalg.norm(x), 1e-12), max(np.linalg.norm(y), 1e-12)
    return float(x @ y / (nx * ny))


def _random_pair(seed, c=12, d=16, groups=(0, 0, 1, 1, 1, 2, 2, 2, 2, -1, -1, 0)):
    rng = np.random.default_rng(seed)
    ta, tb = rng.normal(size=(c, d)), rng.normal(size=(c, d))
    bias = rng.normal(size=d)
    return ta, tb, bias, np.array(groups)


def _shapley_by_orderings(players, value):
    """Shapley values by averaging marginal contributions over every ordering of the players."""
    phi = {p: 0.0 for p in players}
    orders = list(itertools.permutations(players))
    for order in orders:
        seen = []
        for p in order:
            before = value(frozenset(seen))
            seen.append(p)
            phi[p] += value(frozenset(seen)) - before
    return {p: v / len(orders) for p, v in phi.items()}


# ----------------------------------------------------------------------------------------------
# the decomposition on hand-made terms (numpy, float64)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sum_identities_and_symmetry(seed):
    ta, tb, bias, groups = _random_pair(seed)
    ev = decompose(ta, tb, bias, bias, groups, NAMES)
    cos = _brute_cos(ta.sum(0) + bias, tb.sum(0) + bias)
    assert ev.similarity == pytest.approx(cos, abs=1e-12)
    assert sum(p.contribution for p in ev.parts) + ev.residual == pytest.approx(cos, abs=1e-12)
    assert ev.residual == pytest.approx(ev.bias + ev.unassigned, abs=1e-15)
    assert (sum(p.difference for p in ev.parts) + ev.residual_difference
            == pytest.approx(1 - cos, abs=1e-12))
    swapped = decompose(tb, ta, bias, bias, groups, NAMES)
    for p in ev.parts:
        q = swapped.part(p.part)
        assert q.contribution == pytest.approx(p.contribution, abs=1e-12)
        assert q.part_similarity == pytest.approx(p.part_similarity, abs=1e-12)
        assert q.difference == pytest.approx(p.difference, abs=1e-12)
        assert q.channels == p.channels
    assert swapped.residual == pytest.approx(ev.residual, abs=1e-12)
    # contributions come largest first; each part lists its channels strongest first
    assert [p.contribution for p in ev.parts] == sorted((p.contribution for p in ev.parts),
                                                        reverse=True)
    for p in ev.parts:
        assert p.channel_contributions == sorted(p.channel_contributions, reverse=True)
        assert sum(p.channel_contributions) == pytest.approx(p.contribution, abs=1e-12)
    every = sorted(c for p in ev.parts for c in p.channels) + ev.unassigned_channels
    assert sorted(every) == list(range(len(groups)))


def test_contributions_are_the_shapley_values_of_the_dot_product():
    """k_g == the Shapley value of group g (parts, unassigned, bias) in the game
    S -> (sum_S a-terms) . (sum_S b-terms) / (|e_a| |e_b|), enumerated over all orderings."""
    ta, tb, bias, groups = _random_pair(5)
    bias_b = bias + np.random.default_rng(9).normal(size=bias.shape)  # also with unequal biases
    ev = decompose(ta, tb, bias, bias_b, groups, NAMES)
    vec_a = {g: ta[groups == g].sum(0) for g in (-1, 0, 1, 2)} | {"bias": bias}
    vec_b = {g: tb[groups == g].sum(0) for g in (-1, 0, 1, 2)} | {"bias": bias_b}
    ea, eb = sum(vec_a.values()), sum(vec_b.values())
    norm = np.linalg.norm(ea) * np.linalg.norm(eb)

    def value(s):
        if not s:
            return 0.0
        return float(sum(vec_a[p] for p in s) @ sum(vec_b[p] for p in s) / norm)

    phi = _shapley_by_orderings(list(vec_a), value)
    for k, name in enumerate(NAMES):
        assert ev.part(name).contribution == pytest.approx(phi[k], abs=1e-12)
    assert ev.unassigned == pytest.approx(phi[-1], abs=1e-12)
    assert ev.bias == pytest.approx(phi["bias"], abs=1e-12)


def test_difference_is_the_shapley_value_of_the_mean_baseline_game():
    """difference_g == the Shapley value of 1 - cos in the game where the groups outside S
    take the mean of the two faces' terms, enumerated over all orderings."""
    ta, tb, bias, groups = _random_pair(7)
    bias_b = bias * 0.5
    ev = decompose(ta, tb, bias, bias_b, groups, NAMES)
    ga = {g: ta[groups == g].sum(0) for g in (-1, 0, 1, 2)} | {"bias": bias}
    gb = {g: tb[groups == g].sum(0) for g in (-1, 0, 1, 2)} | {"bias": bias_b}

    def value(s):
        x = sum(ga[p] if p in s else (ga[p] + gb[p]) / 2 for p in ga)
        y = sum(gb[p] if p in s else (ga[p] + gb[p]) / 2 for p in ga)
        return 1.0 - _brute_cos(x, y)

    phi = _shapley_by_orderings(list(ga), value)
    for k, name in enumerate(NAMES):
        assert ev.part(name).difference == pytest.approx(phi[k], abs=1e-12)
    assert ev.residual_difference == pytest.approx(phi[-1] + phi["bias"], abs=1e-12)


@pytest.mark.parametrize("changed", [0, 1, 2])
def test_faces_differing_in_one_part_put_the_whole_difference_on_it(changed):
    ta, _, bias, groups = _random_pair(11)
    tb = ta.copy()
    rng = np.random.default_rng(changed)
    tb[groups == changed] = rng.normal(size=(int(np.sum(groups == changed)), ta.shape[1]))
    ev = decompose(ta, tb, bias, bias, groups, NAMES)
    assert ev.similarity < 0.999
    for p in ev.parts:
        if p.part == NAMES[changed]:
            assert p.difference == pytest.approx(1 - ev.similarity, abs=1e-12)
            assert p.part_similarity < 0.999
        else:
            assert p.difference == 0.0
            assert p.part_similarity == pytest.approx(1.0, abs=1e-12)
    assert ev.residual_difference == 0.0


def test_identical_faces_and_silent_parts():
    ta, _, bias, groups = _random_pair(3)
    ev = decompose(ta, ta, bias, bias, groups, NAMES + ["mouth"])   # "mouth" has no channel
    assert ev.similarity == pytest.approx(1.0, abs=1e-12)
    assert all(p.difference == 0.0 for p in ev.parts) and ev.residual_difference == 0.0
    mouth = ev.part("mouth")
    assert mouth.channels == [] and mouth.contribution == 0.0 and mouth.part_similarity == 0.0
    assert all(p.part_similarity == pytest.approx(1.0) for p in ev.parts if p.channels)
    # a part silent on one face (all its terms 0) has no similarity to speak of: 0
    tb = ta.copy()
    tb[groups == 1] = 0
    assert decompose(ta, tb, bias, bias, groups, NAMES).part("eyes").part_similarity == 0.0


def test_part_similarity_is_the_cosine_of_the_part_terms():
    ta, tb, bias, groups = _random_pair(4)
    ev = decompose(ta, tb, bias, bias, groups, NAMES)
    for k, name in enumerate(NAMES):
        ref = _brute_cos(ta[groups == k].sum(0), tb[groups == k].sum(0))
        assert ev.part(name).part_similarity == pytest.approx(ref, abs=1e-12)


def test_fixed_cell_channels_count_as_no_part():
    table = {"part_names": NAMES, "channel_part": [0, 1, 2, -1, 1],
             "channel_fixed": [0, 1, 0, 0, 0]}
    assert part_groups(table).tolist() == [0, -1, 2, -1, 1]
    assert part_groups({"part_names": NAMES, "channel_part": [0, 1]}).tolist() == [0, 1]


def test_bad_inputs_are_refused():
    ta, tb, bias, groups = _random_pair(0)
    with pytest.raises(ValueError, match="terms must be"):
        decompose(ta, tb[:, :-1], bias, bias, groups, NAMES)
    with pytest.raises(ValueError, match="part assignments"):
        decompose(ta, tb, bias, bias, groups[:-1], NAMES)
    with pytest.raises(ValueError, match="part indices"):
        decompose(ta, tb, bias, bias, np.where(groups == 2, 3, groups), NAMES)
    bad = ta.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        decompose(bad, tb, bias, bias, groups, NAMES)
    with pytest.raises(ValueError, match="at most"):
        decompose(ta, tb, bias, bias, groups, [f"p{i}" for i in range(11)])
    with pytest.raises(ValueError, match="no images"):
        decompose(ta, tb, bias, bias, groups, NAMES).render()


def _table_numbers(text):
    """{row name: [numbers]} from ChannelEvidence.table()."""
    rows = {}
    for line in text.splitlines():
        name = line.split(" ", 1)[0]
        if name and not set(name) <= {"-"} and name != "part":
            rows[name] = [float(x) for x in re.findall(r"[-+]?\d+\.\d{4}", line)]
    return rows


def test_table_and_dict_carry_the_same_numbers():
    ta, tb, bias, groups = _random_pair(8)
    ev = decompose(ta, tb, bias, bias, groups, NAMES)
    d = json.loads(json.dumps(ev.to_dict()))        # JSON-serialisable
    rows = _table_numbers(ev.table())
    assert list(rows)[:len(NAMES)] == [p["part"] for p in d["parts"]]
    for p in d["parts"]:
        got = rows[p["part"]]
        assert got[:3] == [round(p["contribution"], 4), round(p["part_similarity"], 4),
                           round(p["difference"], 4)]
        assert got[3] == round(p["channel_contributions"][0], 4)
    assert rows["residual"][:2] == [round(d["residual"], 4), round(d["residual_difference"], 4)]
    assert rows["total"][:2] == [round(d["similarity"], 4), round(1 - d["similarity"], 4)]


# ----------------------------------------------------------------------------------------------
# head.onnx and the runtime, on the trained fixture
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[False, True], ids=["one-view", "flip-tta"])
def exported(tmp_path_factory, request):
    """The fixture exported in both protocols (one view, the default, and flip TTA)."""
    folder = tmp_path_factory.mktemp("pe_zoo") / "tiny-ecloss"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py"))
    out = tmp_path_factory.mktemp("pe_out")
    lines = []
    result = export_model(folder, out, torchscript=False, flip=request.param,
                          log=lines.append)
    return out, result, lines


@pytest.fixture(scope="module")
def faces():
    """Held-out ORL faces: two of one person, one of another."""
    ids = ORLFaces(split="heldout").identities
    root = orl_root()
    return (root / f"s{ids[0]}" / "1.pgm", root / f"s{ids[0]}" / "2.pgm",
            root / f"s{ids[1]}" / "1.pgm")


def test_export_writes_the_head_with_its_checks(exported):
    out, result, lines = exported
    assert (out / HEAD_FILE).is_file()
    rows = {(r["output"], r["batch"]) for r in result.parity if r["file"] == HEAD_FILE}
    assert {("channel_terms+bias", 1), ("channel_terms+bias", 5),
            ("channel_terms per channel", 1)} <= rows
    meta = {p.key: p.value for p in onnx.load(str(out / HEAD_FILE)).metadata_props}
    emb = {p.key: p.value for p in onnx.load(str(out / "embedding.onnx")).metadata_props}
    assert meta["export_id"] == emb["export_id"]
    assert meta["evidence_baseline"].startswith("mean pooled target maps of 100 faces: ORL")
    assert any("per-part evidence baseline" in line for line in lines)


def _numpy_head(folder):
    """(W (D, C, P), b (D,)) of the fixture's head, folded from its safetensors in float64."""
    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
    scale = w["embedding_bn.weight"] / np.sqrt(w["embedding_bn.running_var"] + 1e-5)
    W = scale[:, None] * w["embedding.weight"]
    b = scale * (w["embedding.bias"] - w["embedding_bn.running_mean"]) + w["embedding_bn.bias"]
    return W, b


def _maxpool2(maps):
    n = maps.shape[-1] // 2 * 2
    m = maps[..., :n, :n]
    return m.reshape(*m.shape[:-2], n // 2, 2, n // 2, 2).max(axis=(-3, -1))


def test_head_onnx_equals_the_numpy_reference(exported, faces):
    out, _, _ = exported
    pe = ChannelExplainer(out, device="cpu")
    x = pe.maps.preprocess(list(faces))
    fmap = pe.maps.run(x, ["feature_maps"])[0]
    terms, bias = pe.head.run(fmap, ["channel_terms", "head_bias"])
    W, b = _numpy_head(FIXTURE)
    c = fmap.shape[1]
    z = _maxpool2(fmap.astype(np.float64)).reshape(len(fmap), c, -1)         # (B, C, P)
    zero_based = np.einsum("bcp,dcp->bcd", z, W.reshape(W.shape[0], c, -1))  # from silence
    # the baseline shifts every face's terms by the same W_c r_c and the bias by sum_c W_c r_c
    shift = zero_based - terms
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:1], shift.shape), atol=2e-5)
    np.testing.assert_allclose(bias - b, np.broadcast_to(shift[0].sum(0), bias.shape),
                               atol=2e-4)
    np.testing.assert_allclose(terms.sum(1) + bias, zero_based.sum(1) + b, atol=1e-4)


def test_terms_are_measured_from_the_mean_of_the_reference_faces(exported):
    """The baseline is the mean pooled maps of the reference faces (with their mirrors when
    the export embeds with flip TTA): over those faces the channel terms average to zero."""
    out, _, _ = exported
    pe = ChannelExplainer(out, device="cpu")
    paths = ORLFaces("train").paths
    ref = [paths[i] for i in np.linspace(0, len(paths) - 1, 100).astype(int)]
    x = pe.maps.preprocess(ref)
    views = [x, np.ascontiguousarray(x[..., ::-1])][:pe.views]
    fmap = np.concatenate([pe.maps.run(v, ["feature_maps"])[0] for v in views])
    terms = pe.head.run(fmap, ["channel_terms"])[0].astype(np.float64)
    typical = np.abs(terms).mean()
    assert np.abs(terms.mean(0)).max() < 1e-4 * max(1.0, typical) + 1e-5, typical


def test_channel_split_equals_the_embedding_similarity(exported, faces):
    out, _, _ = exported
    v = FaceVerifier(out, device="cpu")
    pe = ChannelExplainer(out, device="cpu")
    for a, b in [(faces[0], faces[1]), (faces[0], faces[2])]:
        plain = v.verify(a, b)
        ev = pe.explain(a, b, threshold=plain.threshold)
        assert plain.evidence is None
        assert isinstance(ev, ChannelEvidence)
        assert ev.similarity == pytest.approx(plain.similarity, abs=1e-5)
        assert ev.threshold == plain.threshold
        contributions = [p.contribution for p in ev.parts]
        assert contributions == sorted(contributions, reverse=True)
        names = json.loads((FIXTURE / "channel_parts.json").read_text())["part_names"]
        assert sorted(p.part for p in ev.parts) == sorted(names)
        assert sum(p.contribution for p in ev.parts) + ev.residual == pytest.approx(
            ev.similarity, abs=1e-9)
        assert all(-1 <= p.part_similarity <= 1 for p in ev.parts)
    same = pe.explain(faces[0], faces[1]).similarity
    other = pe.explain(faces[0], faces[2]).similarity
    assert same > other


def test_real_faces_differing_in_one_parts_channels(exported, faces):
    """Face b' = face a with one part's target maps taken from face b (both views): all of the
    difference lands on that part, none on the others."""
    out, _, _ = exported
    pe = ChannelExplainer(out, device="cpu")
    x = pe.maps.preprocess([faces[0], faces[2]])
    maps = [pe.maps.run(v, ["feature_maps"])[0] for v in (x, np.ascontiguousarray(x[..., ::-1]))]
    part = int(np.bincount(pe.groups[pe.groups >= 0]).argmax())
    mixed = [m[0].copy() for m in maps]
    for view, m in zip(mixed, maps):
        view[pe.groups == part] = m[1][pe.groups == part]
    batch = np.stack([maps[0][0], mixed[0], maps[1][0], mixed[1]])   # a, b' then mirrors
    terms, bias = pe.head.run(batch, ["channel_terms", "head_bias"])
    terms = terms.astype(np.float64).reshape(2, 2, *terms.shape[1:]).sum(0)
    bias = bias.astype(np.float64).reshape(2, 2, -1).sum(0)
    ev = decompose(terms[0], terms[1], bias[0], bias[1], pe.groups, pe.parts["part_names"])
    name = pe.parts["part_names"][part]
    assert ev.similarity < 0.999
    assert ev.part(name).difference == pytest.approx(1 - ev.similarity, abs=1e-6)
    for p in ev.parts:
        if p.part != name:
            assert abs(p.difference) < 1e-6 and (not p.channels or p.part_similarity > 0.9999)


def test_picture(exported, faces, tmp_path):
    out, _, _ = exported
    ev = ChannelExplainer(out, device="cpu").explain(faces[0], faces[1])
    im = ev.render()
    assert im.mode == "RGB" and im.size[0] >= 500 and im.size[1] > 300 + 80 * len(ev.parts)
    a = np.asarray(im)
    assert a.std() > 20                     # faces, heatmaps and bars, not a blank canvas
    # the heatmap tiles are coloured (jet) where the faces are grey
    tiles = a[300:300 + 80 * len(ev.parts), 12:200].astype(int)
    assert (np.abs(tiles[..., 0] - tiles[..., 2]) > 60).mean() > 0.01
    again = ev.render(faces[0], faces[1])   # explicit images: the same picture
    assert np.array_equal(np.asarray(again), a)
    with pytest.raises(ValueError, match="both images"):
        ev.render(faces[0])


# ----------------------------------------------------------------------------------------------
# CLI, old exports, missing part table, no torch
# ----------------------------------------------------------------------------------------------

def _cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "export.runtime", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def test_old_export_without_head(exported, faces, tmp_path):
    """An export without head.onnx still explains a match by intervention; only the channel
    view is missing, and the channel explainer says how to get it."""
    out, _, _ = exported
    old = tmp_path / "old"
    shutil.copytree(out, old, ignore=shutil.ignore_patterns(HEAD_FILE))
    v = FaceVerifier(old, device="cpu")
    assert v.verify(faces[0], faces[1]).evidence is None        # plain verify: unaffected
    ev = v.verify(faces[0], faces[1], explain=True).evidence
    assert ev.channel_view is None and ev.agree is None and len(ev.parts) == 7
    with pytest.raises(ModelDirError, match=r"head\.onnx: missing.*Export the model again"):
        ChannelExplainer(old, device="cpu")


def _edit_metadata(path, drop=(), **set_):
    model = onnx.load(str(path))
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in drop]
    del model.metadata_props[:]
    for k, val in keep + list(set_.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = k, val
    onnx.save(model, str(path))


def test_head_of_another_export_is_refused(exported, faces, tmp_path):
    out, _, _ = exported
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    _edit_metadata(mixed / HEAD_FILE, drop=("export_id",), export_id="0" * 32)
    with pytest.raises(ModelDirError, match="mixes files of two exports"):
        FaceVerifier(mixed, device="cpu").verify(faces[0], faces[1], explain=True)


def test_export_without_part_table(exported, faces, tmp_path):
    out, _, _ = exported
    bare = tmp_path / "bare"
    shutil.copytree(out, bare)
    _edit_metadata(bare / "featuremap.onnx", drop=("channel_parts",))
    with pytest.raises(ModelDirError, match=r"channel_parts\.json"):
        ChannelExplainer(bare, device="cpu")
    # the match is still explained, by intervention only
    ev = FaceVerifier(bare, device="cpu").verify(faces[0], faces[1], explain=True).evidence
    assert ev.channel_view is None
    # a table given explicitly is used instead
    pe = ChannelExplainer(bare, device="cpu", parts=FIXTURE / "channel_parts.json")
    assert len(pe.explain(faces[0], faces[1]).parts) == 7


NO_TORCH = """
import sys
sys.modules["torch"] = None   # any import of torch now fails
from export.verifier import FaceVerifier
r = FaceVerifier(sys.argv[1], device="cpu").verify(sys.argv[2], sys.argv[3], explain=True)
r.evidence.render().save(sys.argv[4])
print("torch" in sys.modules and sys.modules["torch"] is not None, round(r.similarity, 6))
"""


def test_evidence_runs_without_torch(exported, faces, tmp_path):
    out, _, _ = exported
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", NO_TORCH, str(out), str(faces[0]), str(faces[1]),
                        str(tmp_path / "p.png")], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded, sim = r.stdout.split()
    assert loaded == "False" and math.isfinite(float(sim))
    assert (tmp_path / "p.png").is_file()
