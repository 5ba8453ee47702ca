"""Issue 12, data sets and files (items 5-10) and the fuzz test: every bad .rec/.idx/.bin, label,
identity folder or crop name is refused with an error naming the file and record, nothing is
half-written, and random bytes never escape as anything but the documented exception types."""
import io
import json
import os
import pickle
import random
import resource
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.data import orl_root, read_bin, read_bin_raw, write_bin
from zoo.data.__main__ import main as data_cli
from zoo.data.folders import scan_identity_folder
from zoo.data.recordio import (
    IRHeader,
    RecordIODataset,
    RecordIOError,
    RecordIOWriter,
    pack_images,
    pack_record,
)
from zoo.data.verification import UnsafePickleError

ROOT = Path(__file__).resolve().parents[1]


def _png(seed=0, size=20) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _write_rec(path, labels, num_classes=None):
    """An insightface .rec of len(labels) image records with these (raw) labels; with
    num_classes, identity records and record 0 announcing that many identities."""
    with RecordIOWriter(path) as w:
        for key, lab in enumerate(labels, 1):
            w.write(key, pack_record(IRHeader(0, lab, key, 0), _png(key)))
        if num_classes is not None:
            first = len(labels) + 1
            for k in range(num_classes):
                w.write(first + k, pack_record(IRHeader(0, (1, first), first + k, 0)))
            w.write(0, pack_record(IRHeader(0, (first, first + num_classes), 0, 0)))
    return Path(path)


def _orl_paths(n):
    return sorted((orl_root() / "s1").glob("*.pgm"))[:n] + sorted(
        (orl_root() / "s2").glob("*.pgm"))[:n]


# ------------------------------------------------------------------ 5: RecordIO labels

@pytest.mark.parametrize("bad,problem", [(9.0, "out of range"), (-1.0, "negative"),
                                         (2.5, "not an integer"), (float("nan"), "not a number")])
def test_recordio_labels_checked_against_header(tmp_path, bad, problem):
    rec = _write_rec(tmp_path / "t.rec", [0, 1, 2, bad, 4], num_classes=5)
    ds = RecordIODataset(rec)
    assert ds.num_classes == 5
    with pytest.raises(RecordIOError, match=rf"t\.rec: record 4 at offset \d+: label .*{problem}"):
        ds.labels
    with pytest.raises(RecordIOError, match=r"t\.rec: record 4"):
        ds[3]
    assert ds[2][1] == 2  # the good records still read


@pytest.mark.parametrize("bad,problem", [(-1.0, "negative"), (2.5, "not an integer"),
                                         (float("inf"), "not a number")])
def test_recordio_labels_checked_without_header(tmp_path, bad, problem):
    rec = _write_rec(tmp_path / "plain.rec", [0, bad, 1])
    with pytest.raises(RecordIOError, match=rf"plain\.rec: record 2 .*label .*{problem}"):
        RecordIODataset(rec).labels


def test_recordio_header_range_must_be_finite_integers(tmp_path):
    rec = tmp_path / "h.rec"
    with RecordIOWriter(rec) as w:
        w.write(1, pack_record(IRHeader(0, 0, 1, 0), _png()))
        w.write(0, pack_record(IRHeader(0, (2.0, float("inf")), 0, 0)))
    with pytest.raises(RecordIOError, match=r"h\.rec: record 0 .*identity range"):
        RecordIODataset(rec)
    with RecordIOWriter(rec) as w:  # a range far beyond the file: no list of 10**9 keys
        w.write(1, pack_record(IRHeader(0, 0, 1, 0), _png()))
        w.write(0, pack_record(IRHeader(0, (1e9, 1e9 + 5), 0, 0)))
    with pytest.raises(RecordIOError, match=r"h\.rec: record 0 .*at most 2 records"):
        RecordIODataset(rec)


# ------------------------------------------------------------------ 6: atomic pack

class _Interrupt(BaseException):
    pass


def _interrupt_after(monkeypatch, n):
    import zoo.data.recordio as rio
    real, calls = rio.encode_parts, [0]

    def encode(payload):
        calls[0] += 1
        if calls[0] > n:
            raise _Interrupt("killed mid-pack")
        return real(payload)
    monkeypatch.setattr(rio, "encode_parts", encode)


def test_interrupted_pack_leaves_nothing_loadable(tmp_path, monkeypatch):
    paths = _orl_paths(5)
    _interrupt_after(monkeypatch, 6)
    with pytest.raises(_Interrupt):
        pack_images(paths, [0] * 5 + [1] * 5, tmp_path / "p.rec")
    assert sorted(os.listdir(tmp_path)) == []  # no .rec, no .idx, no temp file left
    with pytest.raises(FileNotFoundError):
        RecordIODataset(tmp_path / "p.rec")


def test_interrupted_repack_keeps_the_old_files(tmp_path, monkeypatch):
    paths = _orl_paths(5)
    report = pack_images(paths, [0] * 5 + [1] * 5, tmp_path / "p.rec")
    assert report["num_images"] == 10
    old = {n: (tmp_path / n).read_bytes() for n in ("p.rec", "p.idx")}
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(_Interrupt):
        pack_images(paths[:4], [0, 0, 1, 1], tmp_path / "p.rec")
    assert sorted(os.listdir(tmp_path)) == ["p.idx", "p.rec"]
    assert {n: (tmp_path / n).read_bytes() for n in old} == old
    ds = RecordIODataset(tmp_path / "p.rec")
    assert len(ds) == 10 and ds.num_classes == 2


def test_pack_with_index_elsewhere_is_atomic_too(tmp_path):
    report = pack_images(_orl_paths(2), [0, 0, 1, 1], tmp_path / "a" / "p.rec",
                         tmp_path / "b" / "p.idx")
    ds = RecordIODataset(report["rec"], report["idx"])
    assert len(ds) == 4 and sorted(os.listdir(tmp_path / "b")) == ["p.idx"]


# ------------------------------------------------------------------ 7: .idx vs the records

@pytest.fixture()
def rec5(tmp_path):
    return _write_rec(tmp_path / "r.rec", [0, 1, 2, 3, 4], num_classes=5)


def test_duplicate_idx_offsets_are_refused(rec5):
    idx = rec5.with_suffix(".idx")
    lines = idx.read_text().splitlines()
    lines[2] = f"3\t{lines[1].split()[1]}"  # key 3 points at record 2
    idx.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordIOError, match=r"r\.idx:3: key 3 points at offset \d+, like key 2 "
                                            r"on line 2"):
        RecordIODataset(rec5)


def test_duplicate_idx_keys_are_refused(rec5):
    idx = rec5.with_suffix(".idx")
    idx.write_text(idx.read_text() + "2\t0\n")
    with pytest.raises(RecordIOError, match=r"r\.idx:\d+: key 2 is listed twice"):
        RecordIODataset(rec5)


def test_irheader_id_must_match_the_key(rec5):
    idx = rec5.with_suffix(".idx")
    offs = {int(k): int(o) for k, o in (ln.split() for ln in idx.read_text().splitlines())}
    offs[2], offs[3] = offs[3], offs[2]  # swapped: every offset still unique
    idx.write_text("".join(f"{k}\t{o}\n" for k, o in offs.items()))
    ds = RecordIODataset(rec5)
    ds[0]
    with pytest.raises(RecordIOError, match=r"r\.rec: record 2 at offset \d+: IRHeader id is 3, "
                                            r"not the key 2: .*r\.idx points at another record"):
        ds[1]


def test_scan_without_idx_refuses_duplicate_ids(tmp_path):
    rec = tmp_path / "d.rec"
    with RecordIOWriter(rec) as w:
        w.write(1, pack_record(IRHeader(0, 0, 1, 0), _png()))
        w.write(2, pack_record(IRHeader(0, 0, 1, 0), _png(1)))
    rec.with_suffix(".idx").unlink()
    with pytest.raises(RecordIOError, match=r"d\.rec: records at offsets 0 and \d+ both have "
                                            r"IRHeader id 1"):
        RecordIODataset(rec)


def test_part_length_beyond_the_file_is_refused_without_reading(tmp_path):
    rec = tmp_path / "l.rec"
    rec.write_bytes(struct.pack("<II", 0xCED7230A, (1 << 29) - 1) + b"x" * 40)
    tracemalloc.start()
    try:
        with pytest.raises(RecordIOError, match=r"l\.rec: truncated at offset 0"):
            RecordIODataset(rec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20


# ------------------------------------------------------------------ 8: the .bin reader

def test_random_bin_files_raise_only_documented_errors(tmp_path):
    rng = random.Random(12)
    for i in range(300):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 120)))
        if i % 2:
            data = bytes([0x80, rng.choice([2, 3, 4])]) + data
        p = tmp_path / f"r{i}.bin"
        p.write_bytes(data)
        with pytest.raises((ValueError, UnsafePickleError)) as exc:
            read_bin_raw(p)
        assert str(p) in str(exc.value), (data, exc.value)


def _ops_reconstruct(shape_n: int, module=b"numpy.core.multiarray") -> bytes:
    """A protocol-2 pickle of ([_reconstruct(ndarray, (shape_n,), b'B')] * 2, [True])."""
    arr = (b"c" + module + b"\n_reconstruct\n" + b"cnumpy\nndarray\n"
           + b"J" + struct.pack("<i", shape_n) + b"\x85" + b"C\x01B" + b"\x87R")
    return b"\x80\x02(" + arr + b"q\x00h\x00" + b"l(\x88l\x86."


def test_ndarray_shape_bounded_by_file_size(tmp_path):
    p = tmp_path / "big.bin"
    p.write_bytes(_ops_reconstruct(2 ** 28))
    assert len(p.read_bytes()) < 100
    tracemalloc.start()
    try:
        with pytest.raises(UnsafePickleError, match=r"big\.bin: .*shape \(268435456,\) refused"):
            read_bin_raw(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20  # refused before allocating 256 MB
    # numpy.ndarray((2**28,), "B") called directly (REDUCE), not through _reconstruct
    p.write_bytes(b"\x80\x02(cnumpy\nndarray\nJ" + struct.pack("<i", 2 ** 28)
                  + b"\x85X\x01\x00\x00\x00B\x86Rq\x00h\x00l(\x88l\x86.")
    with pytest.raises(ValueError, match=r"big\.bin: not a readable \.bin pickle .*not callable"):
        read_bin_raw(p)


def test_memo_index_beyond_the_pickle_is_refused(tmp_path):
    p = tmp_path / "memo.bin"
    p.write_bytes(b"\x80\x02Nr\xff\xff\xff\x00.")  # LONG_BINPUT 2**24: a 256 MB memo table
    with pytest.raises(UnsafePickleError, match=r"memo\.bin: memo index 16777215"):
        read_bin_raw(p)


def test_bytearray_of_a_size_is_refused(tmp_path):
    p = tmp_path / "ba.bin"
    p.write_bytes(b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x04\x85R.")  # 64 MB zeros
    with pytest.raises(UnsafePickleError, match=r"ba\.bin: bytearray\('int',\) refused"):
        read_bin_raw(p)


def test_refusals_inside_helpers_name_the_file(tmp_path):
    p = tmp_path / "codec.bin"
    p.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00utf-16\x86R.")
    with pytest.raises(UnsafePickleError, match=r"codec\.bin: _codecs\.encode\(str, 'utf-16'\)"):
        read_bin_raw(p)
    p.write_bytes(pickle.dumps(([b"a", b"b"], [np.array([1, 0])]), protocol=2))
    with pytest.raises(ValueError, match=r"codec\.bin: issame flag 0 is"):
        read_bin_raw(p)
    p.write_bytes(pickle.dumps(([b"a", b"b"], 5), protocol=4))
    with pytest.raises(ValueError, match=r"codec\.bin: issame of a \.bin is a list, got int"):
        read_bin_raw(p)


_DTYPE_FLAGS = r"""
import sys
from zoo.data.verification import read_bin_raw, UnsafePickleError
# numpy.dtype('u1'), then BUILD with flags 1 (NPY_ITEM_REFCOUNT): dtype.__setstate__ accepts it
# and the uint8 array built on it claims to hold object references (numpy then fails inside).
dt = (b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R"
      b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x01tb")
arr = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
       b"(K\x01K\x08\x85" + dt + b"\x89C\x08AAAAAAAAtb")
open(sys.argv[1], "wb").write(b"\x80\x02(" + arr + b"C\x01xl(\x88l\x86.")
try:
    images, _ = read_bin_raw(sys.argv[1])
    print("LOADED", images[0])
except (UnsafePickleError, ValueError) as e:
    print("REFUSED", e)
"""


def test_dtype_state_cannot_claim_object_references(tmp_path):
    p = tmp_path / "dt.bin"
    res = subprocess.run([sys.executable, "-c", _DTYPE_FLAGS, str(p)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.returncode == 0, res.stderr[-2000:]  # run apart: numpy may fail hard inside
    assert res.stdout.startswith("REFUSED") and "dt.bin" in res.stdout, res.stdout
    assert "dtype uint8 with state" in res.stdout and not res.stderr, res.stderr


def test_numpy_arrays_of_other_layouts_still_read(tmp_path):
    p = tmp_path / "np.bin"
    imgs = [np.frombuffer(_png(1), np.uint8), np.frombuffer(_png(2), np.uint8)]
    for proto in (2, 4):
        p.write_bytes(pickle.dumps((imgs, np.array([True])), protocol=proto))
        raw, issame = read_bin_raw(p)
        assert raw == [_png(1), _png(2)] and issame.tolist() == [True]
    p.write_bytes(pickle.dumps(([np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3))]
                                * 2, [np.int64(0)]), protocol=2))
    raw, issame = read_bin_raw(p)
    assert raw[0] == np.arange(6, dtype=np.uint8).reshape(2, 3).tobytes()
    assert issame.tolist() == [False]


# ------------------------------------------------------------------ 9: crop names, make-bin

class _FakeMTCNN:
    """One face box per image (the middle of it), as facenet-pytorch's MTCNN.detect returns."""

    def detect(self, imgs, landmarks=True):
        boxes, probs, points = [], [], []
        for im in imgs:
            w, h = im.size
            boxes.append(np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]]))
            probs.append(np.array([0.99]))
            points.append(np.full((1, 5, 2), w / 2.0))
        return boxes, probs, points


def test_prep_does_not_overwrite_colliding_crop_names(tmp_path):
    from zoo.prep import crop_faces
    src = tmp_path / "src"
    (src / "s1").mkdir(parents=True)
    Image.open(orl_root() / "s1" / "1.pgm").convert("RGB").save(src / "s1" / "a.jpg")
    Image.open(orl_root() / "s1" / "2.pgm").save(src / "s1" / "a.png")
    rep = crop_faces(src, tmp_path / "dst", size=32, mtcnn=_FakeMTCNN(), progress=False)
    assert rep.num_cropped == 2 and rep.num_renamed == 1
    assert sorted(os.listdir(tmp_path / "dst" / "s1")) == ["a.jpg", "a.png.jpg"]
    assert rep.renamed == [{"src": "s1/a.png", "dst": "s1/a.png.jpg"}]
    lines = [json.loads(x) for x in (tmp_path / "dst" / "manifest.jsonl").read_text().split("\n")
             if x]
    assert {(m["src"], m["dst"]) for m in lines} == {("s1/a.jpg", "s1/a.jpg"),
                                                     ("s1/a.png", "s1/a.png.jpg")}
    saved = json.loads((tmp_path / "dst" / "report.json").read_text())
    assert saved["num_renamed"] == 1
    assert "1 crops renamed" in rep.summary()


def test_make_bin_folder_skips_undecodable_images(tmp_path, capsys):
    root = tmp_path / "ids"
    for name, idx in (("a", ["1", "2", "3"]), ("b", ["1", "2", "3"])):
        (root / name).mkdir(parents=True)
        for i in idx:
            src = orl_root() / ("s1" if name == "a" else "s2") / f"{i}.pgm"
            (root / name / f"{i}.pgm").write_bytes(src.read_bytes())
    (root / "a" / "4.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    out = tmp_path / "f.bin"
    assert data_cli(["make-bin", str(out), "--folder", str(root), "--num-folds", "1"]) == 0
    captured = capsys.readouterr()
    assert "1 undecodable images skipped" in captured.out and "4.jpg" in captured.err
    imgs, issame = read_bin(out)  # every stored image decodes
    assert len(imgs) == 2 * len(issame) > 0


def test_make_bin_lfw_pairs_refuses_an_undecodable_image(tmp_path, capsys):
    root = tmp_path / "lfw"
    (root / "Ann").mkdir(parents=True)
    (root / "Ann" / "Ann_0001.pgm").write_bytes((orl_root() / "s1" / "1.pgm").read_bytes())
    (root / "Ann" / "Ann_0002.pgm").write_bytes(b"P5 garbage")
    txt = tmp_path / "pairs.txt"
    txt.write_text("1\t1\nAnn\t1\t2\nAnn\t1\tAnn\t2\n")
    out = tmp_path / "l.bin"
    with pytest.raises(SystemExit, match=r"Ann_0002\.pgm.*pairs\.txt") as exc:
        data_cli(["make-bin", str(out), "--lfw-pairs", str(txt), "--root", str(root),
                  "--ext", "pgm"])
    assert exc.value.code == 2 and not out.exists()
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback


def test_write_bin_uses_the_atomic_temp_naming(tmp_path, monkeypatch):
    p = tmp_path / "w.bin"
    write_bin(p, [b"a", b"b"], [True])
    old = p.read_bytes()

    def boom(*a, **k):
        raise _Interrupt
    monkeypatch.setattr(pickle, "dump", boom)
    with pytest.raises(_Interrupt):
        write_bin(p, [b"c", b"d"], [False])
    assert p.read_bytes() == old and os.listdir(tmp_path) == ["w.bin"]


# ------------------------------------------------------------------ 10: identity folders

def _identity(root, name, n=1):
    (root / name).mkdir(parents=True)
    for i in range(n):
        (root / name / f"{i}.pgm").write_bytes((orl_root() / "s1" / f"{i + 1}.pgm").read_bytes())


def test_symlink_loop_is_not_an_identity(tmp_path):
    root = tmp_path / "ids"
    _identity(root, "a")
    (root / "cover.pgm").write_bytes((orl_root() / "s2" / "1.pgm").read_bytes())  # no identity
    os.symlink(".", root / "X")
    with pytest.raises(ValueError, match=r"ids/X: identity folder is a link to .*ids, the root"):
        scan_identity_folder(root)
    (root / "X").unlink()
    os.symlink("a", root / "alias")
    with pytest.raises(ValueError, match=r"ids/alias and .*ids/a are the same folder"):
        scan_identity_folder(root)
    (root / "alias").unlink()
    elsewhere = tmp_path / "elsewhere"
    _identity(elsewhere, "b")
    os.symlink(elsewhere / "b", root / "b")  # a link to a real identity elsewhere is fine
    assert scan_identity_folder(root)[2] == ["a", "b"]


def test_nfc_and_nfd_spellings_of_one_name_are_refused(tmp_path):
    root = tmp_path / "ids"
    _identity(root, "Jos\u00e9")       # NFC
    _identity(root, "Jose\u0301")      # NFD: looks the same
    with pytest.raises(ValueError, match=r"one name in two Unicode spellings .*NFC vs NFD"):
        scan_identity_folder(root)


# ------------------------------------------------------------------ fuzz: every reader

def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        if kind < 0.5 and b:
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        elif kind < 0.7 and b:
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 16)]
        elif kind < 0.85:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        elif b:
            i = rng.randrange(len(b))
            b[i:i + 4] = struct.pack("<I", rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 28,
                                                       0xCED7230A, 0]))
    return bytes(b)


_OK = (ValueError, UnsafePickleError)  # RecordIOError, ImageDecodeError: ValueErrors


def _read_rec_everything(rec, idx):
    try:
        ds = RecordIODataset(rec, idx if idx.exists() else None)
    except (FileNotFoundError,) + _OK:
        return
    for call in (lambda: ds.labels, lambda: ds.num_classes):
        try:
            call()
        except _OK:
            pass
    for i in range(min(len(ds), 6)):
        for call in (lambda: ds.raw(i), lambda: ds[i]):
            try:
                call()
            except _OK:
                pass
    if ds.header0 is not None:
        for lab in range(min(ds.num_classes, 3)):
            try:
                ds.identity_range(lab)
            except _OK:
                pass


def test_fuzz_every_reader(tmp_path):
    rng = random.Random(2026)
    rec0 = _write_rec(tmp_path / "base.rec", [0, 1, 1, 2], num_classes=3)
    rec_bytes, idx_bytes = rec0.read_bytes(), rec0.with_suffix(".idx").read_bytes()
    bin0 = tmp_path / "base.bin"
    write_bin(bin0, [_png(k) for k in range(4)], [True, False])
    bin_bytes = [bin0.read_bytes(),
                 pickle.dumps(([np.frombuffer(_png(k), np.uint8) for k in range(2)],
                               [np.bool_(True)]), protocol=2)]
    before = _maxrss_mb()
    cases = 0
    for i in range(160):  # .rec / .idx: random, mutated .rec, mutated .idx, both
        rec, idx = tmp_path / f"f{i}.rec", tmp_path / f"f{i}.idx"
        kind = i % 4
        rec.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
                        if kind == 0 else (_mutate(rec_bytes, rng) if kind in (1, 3)
                                           else rec_bytes))
        if kind == 0 and rng.random() < 0.5:
            pass  # no .idx: the .rec is scanned
        else:
            idx.write_bytes(_mutate(idx_bytes, rng) if kind >= 2 else idx_bytes)
        _read_rec_everything(rec, idx)
        cases += 1
    for i in range(160):  # .bin: random, mutated protocol 4 and protocol 2 with numpy arrays
        p = tmp_path / f"f{i}.bin"
        if i % 4 == 0:
            p.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))))
        else:
            p.write_bytes(_mutate(bin_bytes[i % 2], rng))
        for reader in (read_bin_raw, read_bin):
            try:
                reader(p)
            except _OK as e:
                assert str(p) in str(e), e
        cases += 1
    assert cases == 320
    assert _maxrss_mb() - before < 300
