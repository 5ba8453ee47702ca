"""Issue 12, data sets and files (items 5-7, 9, 10): every bad .rec/.idx, label, identity folder
or crop name is refused with an error naming the file and record, and nothing is half-written.
The .bin reader (item 8) and the fuzz test of every reader: tests/test_hardening_bin.py."""
import json
import os
import pickle
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rec_files import png_bytes as _png, write_rec as _write_rec

from zoo.data import orl_root, read_bin, write_bin
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

ROOT = Path(__file__).resolve().parents[1]


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
