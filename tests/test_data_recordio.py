"""insightface RecordIO: MXNet byte layout, ORL round trip, corrupt-file errors, worker safety."""
import struct

import pytest
import torch

from zoo.data import ORLFaces, orl_root
from zoo.data.__main__ import main as data_cli
from zoo.data.folders import IdentityFolder
from zoo.data.recordio import (
    IRHeader,
    RecordIODataset,
    RecordIOError,
    RecordIOReader,
    RecordIOWriter,
    encode_parts,
    pack_images,
    pack_record,
    unpack_record,
)


def test_record_bytes_match_hand_computed_mxnet_layout(tmp_path):
    payload = pack_record(IRHeader(0, 5.0, 7, 0), b"abc")
    expected_payload = (bytes([0, 0, 0, 0])            # flag uint32 = 0
                        + bytes([0x00, 0x00, 0xA0, 0x40])  # label float32 5.0
                        + bytes([7, 0, 0, 0, 0, 0, 0, 0])  # id uint64
                        + bytes(8)                         # id2 uint64
                        + b"abc")
    assert payload == expected_payload
    with RecordIOWriter(tmp_path / "a.rec") as w:
        assert w.write(7, payload) == 0
        assert w.write(8, b"") == 36
    raw = (tmp_path / "a.rec").read_bytes()
    assert raw[:36] == (bytes([0x0A, 0x23, 0xD7, 0xCE])  # magic 0xced7230a little endian
                        + bytes([27, 0, 0, 0])             # lrecord: cflag 0, length 27
                        + expected_payload + b"\0")        # 1 byte padding to 28
    assert raw[36:] == bytes([0x0A, 0x23, 0xD7, 0xCE, 0, 0, 0, 0])  # empty record, no padding
    assert (tmp_path / "a.idx").read_text() == "7\t0\n8\t36\n"
    r = RecordIOReader(tmp_path / "a.rec")
    header, data = unpack_record(r.read(7))
    assert header == IRHeader(0, 5.0, 7, 0) and data == b"abc" and r.read(8) == b""


def test_payload_holding_the_magic_is_split_like_dmlc():
    magic = struct.pack("<I", 0xCED7230A)
    payload = b"AAAA" + magic + b"BB"
    want = (magic + struct.pack("<I", (1 << 29) | 4) + b"AAAA"
            + magic + struct.pack("<I", (3 << 29) | 2) + b"BB" + b"\0\0")
    assert encode_parts(payload) == want
    # an unaligned magic is data, not a split point
    assert encode_parts(b"A" + magic + b"CCC") == \
        magic + struct.pack("<I", 8) + b"A" + magic + b"CCC"


def test_split_record_round_trip(tmp_path):
    magic = struct.pack("<I", 0xCED7230A)
    payloads = [magic * 3, b"x" * 4 + magic + b"y" * 5 + magic, magic + b"z"]
    with RecordIOWriter(tmp_path / "s.rec") as w:
        for k, p in enumerate(payloads):
            w.write(k, p)
    r = RecordIOReader(tmp_path / "s.rec")
    assert [r.read(k) for k in range(3)] == payloads


def test_label_vector_header():
    payload = pack_record(IRHeader(0, [3.0, 9.0], 0, 0), b"")
    assert payload[:4] == struct.pack("<I", 2) and len(payload) == 24 + 8
    h, data = unpack_record(payload)
    assert h.flag == 2 and h.label.tolist() == [3.0, 9.0] and data == b""


def test_pack_orl_round_trips_byte_for_byte(tmp_path):
    orl = ORLFaces("all")
    report = pack_images(orl.paths, orl.labels, tmp_path / "orl.rec")
    assert report["num_images"] == 400 and report["num_classes"] == 40 and not report["skipped"]
    ds = RecordIODataset(tmp_path / "orl.rec")
    assert len(ds) == 400 and ds.num_classes == 40 and ds.header0 == (401, 441)
    assert ds.labels == orl.labels
    for i in range(400):
        label, data = ds.raw(i)
        assert label == orl.labels[i] and data == orl.paths[i].read_bytes()
    img, label = ds[17]
    assert img.tobytes() == orl[17][0].tobytes() and label == orl[17][1]
    assert ds.identity_range(0) == (1, 11) and ds.identity_range(39) == (391, 401)
    h0, _ = ds.reader.read_header(0)
    assert h0.flag == 2 and h0.label.tolist() == [401.0, 441.0]


def test_pack_cli_on_identity_folder(tmp_path, capsys):
    assert data_cli(["pack", str(orl_root()), str(tmp_path / "f.rec")]) == 0
    assert "0 files skipped" in capsys.readouterr().out
    src = IdentityFolder(orl_root())
    ds = RecordIODataset(tmp_path / "f.rec", tmp_path / "f.idx")
    assert len(ds) == len(src) and ds.labels == src.labels
    assert all(ds.raw(i)[1] == src.paths[i].read_bytes() for i in range(0, len(src), 37))


def test_pack_skips_and_reports_undecodable(tmp_path):
    orl = ORLFaces("heldout")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    report = pack_images(list(orl.paths[:3]) + [bad], [0, 0, 1, 1], tmp_path / "p.rec")
    assert report["num_images"] == 3 and len(report["skipped"]) == 1
    assert "bad.jpg" in report["skipped"][0][1]


@pytest.fixture()
def small_rec(tmp_path):
    orl = ORLFaces("heldout")
    pack_images(orl.paths[:20], orl.labels[:20], tmp_path / "t.rec")
    return tmp_path / "t.rec"


def test_truncated_rec_names_file_and_offset(small_rec):
    offsets = RecordIOReader(small_rec).offsets
    data = small_rec.read_bytes()
    small_rec.write_bytes(data[:offsets[20] + 100])  # cut inside image record 20
    with pytest.raises(RecordIOError, match=rf"t\.idx:\d+: key 21 points at offset "
                                            rf"{offsets[21]}, beyond the end of .*t\.rec"):
        RecordIODataset(small_rec)
    # With an index that only lists the surviving records, the cut shows when record 20 is read.
    idx = small_rec.with_suffix(".idx")
    idx.write_text("".join(f"{k}\t{offsets[k]}\n" for k in range(1, 21)))
    ds = RecordIODataset(small_rec)
    assert len(ds) == 20
    ds[18]  # records before the cut still read
    with pytest.raises(RecordIOError, match=rf"t\.rec: truncated at offset {offsets[20]}"):
        ds[19]


def test_wrong_magic_names_file_and_offset(small_rec):
    off = RecordIOReader(small_rec).offsets[5]
    data = bytearray(small_rec.read_bytes())
    data[off:off + 4] = b"\x00\x11\x22\x33"
    small_rec.write_bytes(bytes(data))
    ds = RecordIODataset(small_rec)
    with pytest.raises(RecordIOError, match=rf"t\.rec: bad magic 0x33221100 at offset {off}"):
        ds[4]


def test_corrupted_idx_names_file_and_offset(small_rec):
    idx = small_rec.with_suffix(".idx")
    lines = idx.read_text().splitlines()
    key, off = lines[3].split("\t")
    lines[3] = f"{key}\t{int(off) + 6}"  # not 4-byte aligned
    idx.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordIOError,
                       match=rf"t\.idx:4: key {key} points at offset {int(off) + 6}"):
        RecordIODataset(small_rec)
    lines[3] = f"{key}\t{int(off) + 8}"  # aligned, but inside the record: no magic there
    idx.write_text("\n".join(lines) + "\n")
    ds = RecordIODataset(small_rec)
    with pytest.raises(RecordIOError, match=rf"t\.rec: bad magic .* at offset {int(off) + 8}"):
        ds[int(key) - 1]
    lines[3] = "garbage"
    idx.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordIOError, match=r"t\.idx:4: expected 'key<TAB>offset'"):
        RecordIODataset(small_rec)


def test_missing_idx_is_rebuilt_by_scanning(small_rec):
    small_rec.with_suffix(".idx").unlink()
    ds = RecordIODataset(small_rec)
    assert len(ds) == 20 and ds.num_classes == 2


def test_dataloader_workers_read_their_own_handles(small_rec):
    from zoo.data import face_transform
    ds = RecordIODataset(small_rec, transform=face_transform(16))
    ds[0]  # the parent opens a handle before forking: workers must not share its offset
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    xs, ys = zip(*loader)
    ref = torch.stack([ds[i][0] for i in range(20)])
    assert torch.equal(torch.cat(xs), ref)
    assert torch.cat(ys).tolist() == ds.labels
