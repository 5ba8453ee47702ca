"""insightface .bin verification sets: round trip on ORL pairs, the restricted unpickler,
pairs.txt."""
import pickle

import numpy as np
import pytest
import torch

from zoo.data import ORLPairs, read_bin, read_bin_raw, read_lfw_pairs, write_bin
from zoo.data.__main__ import main as data_cli
from zoo.data.insightface_bin import UnsafePickleError
from zoo.data.verification import lfw_pair_paths


class _RunsCode:
    """Unpickling this calls exec(): the classic malicious-pickle payload."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def test_bin_from_orl_pairs_reads_back_equal(tmp_path):
    out = tmp_path / "orl.bin"
    assert data_cli(["make-bin", str(out), "--orl"]) == 0
    pairs = ORLPairs()
    raw, issame = read_bin_raw(out)
    assert len(raw) == 2 * len(pairs) == 1800
    np.testing.assert_array_equal(issame, pairs.issame)
    for k, (i, j, _, _) in enumerate(pairs.pairs):
        assert raw[2 * k] == pairs.dataset.paths[i].read_bytes()
        assert raw[2 * k + 1] == pairs.dataset.paths[j].read_bytes()
    imgs, issame2 = read_bin(out)
    assert imgs[0].tobytes() == pairs[0][0].tobytes() and (issame2 == issame).all()
    x, _ = read_bin(out, input_size=32)
    assert isinstance(x, torch.Tensor) and x.shape == (1800, 3, 32, 32)


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps(([b"x", b"y"], [_RunsCode(marker)])))
    with pytest.raises(UnsafePickleError,
                       match=r"evil\.bin: refused to load global builtins\.exec"):
        read_bin_raw(evil)
    assert not marker.exists()
    # the payload is real: an unrestricted pickle.load would have run it
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_RunsCode(control)))
    assert control.read_text() == "pwned"


def test_other_globals_and_object_arrays_are_refused(tmp_path):
    p = tmp_path / "obj.bin"
    p.write_bytes(pickle.dumps(([np.array([b"a", 1], dtype=object)] * 2, [True])))
    with pytest.raises(UnsafePickleError, match="dtype object refused"):
        read_bin_raw(p)
    p.write_bytes(pickle.dumps(([b"a", b"b"], [True]), protocol=2) + b"")
    assert read_bin_raw(p)[1].tolist() == [True]
    import collections
    p.write_bytes(pickle.dumps((collections.OrderedDict(), [True])))
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        read_bin_raw(p)


def test_numpy_uint8_images_and_numpy_bools_accepted(tmp_path):
    p = tmp_path / "np.bin"
    imgs = [np.frombuffer(b"\x89PNG fake", dtype=np.uint8), np.frombuffer(b"abc", dtype=np.uint8)]
    p.write_bytes(pickle.dumps((imgs, [np.bool_(True)])))
    raw, issame = read_bin_raw(p)
    assert raw == [b"\x89PNG fake", b"abc"] and issame.tolist() == [True]


def test_bad_bin_structure_errors_name_the_file(tmp_path):
    p = tmp_path / "odd.bin"
    write_bin(p, [b"a", b"b"], [True])
    p.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(ValueError, match=r"odd\.bin: 3 images for 1 pairs"):
        read_bin_raw(p)
    p.write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match=r"odd\.bin: not a readable \.bin pickle"):
        read_bin_raw(p)
    write_bin(p, [b"not", b"images"], [False])
    with pytest.raises(ValueError, match=r"odd\.bin: image record 0: cannot decode"):
        read_bin(p)
    with pytest.raises(ValueError, match="2 per pair"):
        write_bin(p, [b"a"], [True])


def test_read_lfw_pairs(tmp_path):
    txt = tmp_path / "pairs.txt"
    txt.write_text("2\t1\nAbel_Pacheco\t1\t4\nA_B\t1\tC_D\t2\nZed\t3\t5\nX_Y\t2\tW_V\t1\n")
    pairs = read_lfw_pairs(txt)
    assert pairs == [("Abel_Pacheco", 1, "Abel_Pacheco", 4, True, 0),
                     ("A_B", 1, "C_D", 2, False, 0),
                     ("Zed", 3, "Zed", 5, True, 1), ("X_Y", 2, "W_V", 1, False, 1)]
    paths = lfw_pair_paths(pairs, tmp_path)
    assert paths[1][1] == tmp_path / "C_D" / "C_D_0002.jpg"
    txt.write_text("1\t1\nAbel\t1\nA\t1\tB\t2\n")
    with pytest.raises(ValueError, match=r"pairs\.txt:2: expected 'name n1 n2'"):
        read_lfw_pairs(txt)
    txt.write_text("1\t2\nAbel\t1\t2\n")
    with pytest.raises(ValueError, match="promises 1 folds"):
        read_lfw_pairs(txt)


def test_make_bin_from_lfw_pairs_and_folder(tmp_path):
    from zoo.data import ORLFaces
    orl = ORLFaces("heldout")
    root = tmp_path / "lfw"
    for name, idx in (("Ann", [0, 1]), ("Bo", [10])):
        (root / name).mkdir(parents=True)
        for n, i in enumerate(idx, 1):
            (root / name / f"{name}_{n:04d}.pgm").write_bytes(orl.paths[i].read_bytes())
    txt = tmp_path / "pairs.txt"
    txt.write_text("1\t1\nAnn\t1\t2\nAnn\t2\tBo\t1\n")
    out = tmp_path / "lfw.bin"
    assert data_cli(["make-bin", str(out), "--lfw-pairs", str(txt), "--root", str(root),
                     "--ext", "pgm"]) == 0
    raw, issame = read_bin_raw(out)
    assert issame.tolist() == [True, False]
    assert raw == [orl.paths[i].read_bytes() for i in (0, 1, 1, 10)]
    txt.write_text("1\t1\nAnn\t1\t3\nAnn\t2\tBo\t1\n")
    with pytest.raises(SystemExit, match="Ann_0003.pgm"):
        data_cli(["make-bin", str(out), "--lfw-pairs", str(txt), "--root", str(root),
                  "--ext", "pgm"])
    assert data_cli(["make-bin", str(tmp_path / "f.bin"), "--folder", str(root),
                     "--num-folds", "1"]) == 0
    raw, issame = read_bin_raw(tmp_path / "f.bin")
    assert issame.tolist() == [True, False] and len(raw) == 4
