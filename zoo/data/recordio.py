"""insightface RecordIO (``train.rec`` + ``train.idx``), binary-compatible with MXNet, without
mxnet.

Byte layout (dmlc-core recordio, little endian; see docs/data.md):

    record   := part+                  one logical record, split only where its payload holds the
                                       magic at a 4-byte aligned offset
    part     := uint32 magic 0xced7230a
                uint32 lrecord = cflag << 29 | length       cflag 0 whole, 1 first, 2 middle, 3 last
                length bytes of data, zero padding to a multiple of 4
    payload  := IRHeader '<IfQQ' (flag uint32, label float32, id uint64, id2 uint64)
                [flag float32 labels when flag > 0]  image bytes

On reassembly the magic that split two parts is put back between them. ``.idx`` is text,
``key<TAB>byte offset of the record's first part<LF>`` per record.

insightface layout: images are records 1..N (label = identity), then one record per identity
(label = (first, end) record range of its images), and record 0 has flag 2 and label
(N + 1, N + 1 + K): the range of the identity records. A file whose record 0 has flag 0 is read
as a plain list of image records (all keys).
"""
import math
import os
import struct
from collections import namedtuple
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write_files, sweep_stale_tmp
from .folders import scan_identity_folder
from .images import ImageDecodeError, decode_rgb, load_rgb

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_PART_HEADER = struct.Struct("<II")
IR_FORMAT = "<IfQQ"  # MXNet's 'IfQQ' in native order = this on every little-endian machine
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24
_MAX_LEN = (1 << 29) - 1

IRHeader = namedtuple("IRHeader", ["flag", "label", "id", "id2"])


class RecordIOError(ValueError):
    """A malformed .rec/.idx; the message names the file and the byte offset (or line)."""


def pack_record(header: IRHeader, data: bytes = b"") -> bytes:
    """MXNet ``recordio.pack``: IRHeader (+ float32 label vector when label is a sequence)
    + data."""
    flag, label, rid, id2 = header
    if np.isscalar(label):
        head = struct.pack(IR_FORMAT, 0, float(label), int(rid), int(id2))
        return head + bytes(data)
    vec = np.asarray(label, dtype="<f4").reshape(-1)
    return struct.pack(IR_FORMAT, vec.size, 0.0, int(rid), int(id2)) + vec.tobytes() + bytes(data)


def unpack_record(payload: bytes, where="record"):
    """MXNet ``recordio.unpack``: (IRHeader, data); label is a float32 array when flag > 0."""
    if len(payload) < IR_SIZE:
        raise RecordIOError(f"{where}: payload of {len(payload)} bytes is shorter than the "
                            f"{IR_SIZE}-byte IRHeader")
    flag, label, rid, id2 = struct.unpack_from(IR_FORMAT, payload)
    data = payload[IR_SIZE:]
    if flag > 0:
        if len(data) < 4 * flag:
            raise RecordIOError(f"{where}: IRHeader flag {flag} promises {flag} float labels but "
                                f"only {len(data)} bytes follow")
        label = np.frombuffer(data, dtype="<f4", count=flag).copy()
        data = data[4 * flag:]
    return IRHeader(flag, label, rid, id2), data


def encode_parts(payload: bytes) -> bytes:
    """The on-disk bytes of one record (dmlc RecordIOWriter::WriteRecord)."""
    n = len(payload)
    if n > _MAX_LEN:
        raise ValueError(f"a RecordIO record holds at most {_MAX_LEN} bytes, got {n}")
    out, start = [], 0
    for i in range(0, n - n % 4, 4):  # split where the magic sits at an aligned offset
        if payload[i:i + 4] == _MAGIC_BYTES:
            out += [_PART_HEADER.pack(MAGIC, ((1 if start == 0 else 2) << 29) | (i - start)),
                    payload[start:i]]
            start = i + 4
    out += [_PART_HEADER.pack(MAGIC, ((3 if start else 0) << 29) | (n - start)), payload[start:]]
    out.append(b"\0" * (-n % 4))
    return b"".join(out)


class RecordIOWriter:
    """Write records and the ``.idx`` (``key\\toffset``) like MXIndexedRecordIO(..., 'w').

    Streams to the given paths as it goes (like MXNet); :func:`pack_images` wraps it in an atomic
    write, so use that (or write to temp names yourself) when readers may see the files."""

    def __init__(self, rec_path, idx_path=None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        self._rec = open(self.rec_path, "wb")
        self._idx = open(self.idx_path, "w", newline="\n")
        self.keys = []

    def write(self, key: int, payload: bytes) -> int:
        """Append one record (raw payload) under ``key``; returns its byte offset."""
        pos = self._rec.tell()
        self._rec.write(encode_parts(payload))
        self._idx.write(f"{int(key)}\t{pos}\n")
        self.keys.append(int(key))
        return pos

    def write_image(self, key: int, label, image_bytes: bytes, id2: int = 0) -> int:
        return self.write(key, pack_record(IRHeader(0, label, key, id2), image_bytes))

    def close(self):
        self._rec.close()
        self._idx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RecordIOReader:
    """Random access to the records of a .rec through its .idx. One open file per process."""

    def __init__(self, rec_path, idx_path=None):
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"{self.rec_path}: RecordIO file not found")
        self.size = self.rec_path.stat().st_size
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self._fh, self._pid = None, None
        if self.idx_path.is_file():
            self.offsets = self._read_idx()
        else:  # no index: scan once; keys are the IRHeader ids (what insightface writes)
            self.offsets = self._scan()
        self.keys = list(self.offsets)

    def _read_idx(self):
        offsets, where = {}, {}  # where: offset -> (key, line) of the first key pointing there
        with open(self.idx_path, "r", encoding="ascii", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.split("\t")
                try:
                    key, off = int(parts[0]), int(parts[1])
                    if len(parts) != 2:
                        raise ValueError
                except (ValueError, IndexError):
                    raise RecordIOError(f"{self.idx_path}:{lineno}: expected 'key<TAB>offset', "
                                        f"got {line.rstrip()[:80]!r}") from None
                if off > self.size - _PART_HEADER.size:
                    raise RecordIOError(
                        f"{self.idx_path}:{lineno}: key {key} points at offset {off}, beyond the "
                        f"end of {self.rec_path} ({self.size} bytes): the .rec is truncated or "
                        "the .idx belongs to another file")
                if off < 0 or off % 4:
                    raise RecordIOError(
                        f"{self.idx_path}:{lineno}: key {key} points at offset {off}, which is "
                        f"not a 4-byte aligned record start inside {self.rec_path} "
                        f"({self.size} bytes)")
                if key in offsets:
                    raise RecordIOError(
                        f"{self.idx_path}:{lineno}: key {key} is listed twice (line "
                        f"{where[offsets[key]][1]} too): the .idx is damaged")
                if off in where:
                    raise RecordIOError(
                        f"{self.idx_path}:{lineno}: key {key} points at offset {off}, like key "
                        f"{where[off][0]} on line {where[off][1]}: two keys cannot share one "
                        f"record of {self.rec_path}; the .idx is damaged")
                offsets[key], where[off] = off, (key, lineno)
        return offsets

    def _scan(self):
        offsets, pos = {}, 0
        while pos < self.size:
            payload, end = self._read_at(pos)
            header, _ = unpack_record(payload, f"{self.rec_path} at offset {pos}")
            if int(header.id) in offsets:
                raise RecordIOError(
                    f"{self.rec_path}: records at offsets {offsets[int(header.id)]} and {pos} "
                    f"both have IRHeader id {header.id} (the keys when there is no .idx)")
            offsets[int(header.id)] = pos
            pos = end
        return offsets

    def _file(self):
        # Opened lazily and re-opened after fork: DataLoader workers never share a file offset.
        if self._fh is None or self._pid != os.getpid():
            self._fh, self._pid = open(self.rec_path, "rb"), os.getpid()
        return self._fh

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fh"] = state["_pid"] = None
        return state

    def _read_at(self, pos):
        """(payload, offset after the record) of the record starting at byte ``pos``."""
        f = self._file()
        f.seek(pos)
        chunks, start = [], pos
        while True:
            head = f.read(_PART_HEADER.size)
            if len(head) < _PART_HEADER.size:
                raise RecordIOError(f"{self.rec_path}: truncated at offset {pos}: expected an "
                                    f"8-byte part header, file ends after {len(head)} bytes "
                                    f"(record starting at offset {start})")
            magic, lrec = _PART_HEADER.unpack(head)
            if magic != MAGIC:
                raise RecordIOError(f"{self.rec_path}: bad magic 0x{magic:08x} at offset {pos} "
                                    f"(expected 0x{MAGIC:08x}; record starting at offset {start})")
            cflag, length = lrec >> 29, lrec & _MAX_LEN
            padded = length + (-length % 4)
            if pos + _PART_HEADER.size + padded > self.size:  # checked before reading: a
                data = b""  # damaged length must not allocate up to 512 MB
            else:
                data = f.read(padded)
            if len(data) < padded:
                left = max(0, self.size - pos - _PART_HEADER.size)
                raise RecordIOError(f"{self.rec_path}: truncated at offset {pos}: part of "
                                    f"{length} bytes (+padding) but only {left} bytes left "
                                    f"(record starting at offset {start})")
            expect_first = not chunks
            if (cflag in (0, 1)) != expect_first:
                raise RecordIOError(f"{self.rec_path}: continuation flag {cflag} out of order at "
                                    f"offset {pos} (record starting at offset {start})")
            chunks.append(data[:length])
            pos += _PART_HEADER.size + padded
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(chunks), pos

    def read(self, key) -> bytes:
        """The payload (IRHeader + data) of record ``key``."""
        try:
            pos = self.offsets[key]
        except KeyError:
            raise KeyError(f"{self.idx_path}: no record with key {key}") from None
        return self._read_at(pos)[0]

    def read_header(self, key):
        """(IRHeader, data) of record ``key``; its IRHeader id must be ``key`` (what MXNet's
        im2rec and insightface write), else the .idx points at another record."""
        payload = self.read(key)
        where = f"{self.rec_path}: record {key} at offset {self.offsets[key]}"
        header, data = unpack_record(payload, where)
        if int(header.id) != int(key):
            raise RecordIOError(f"{where}: IRHeader id is {header.id}, not the key {key}: "
                                f"{self.idx_path} points at another record (damaged, or it "
                                "belongs to another .rec)")
        return header, data

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class RecordIODataset(torch.utils.data.Dataset):
    """insightface ``train.rec``/``train.idx`` as a face dataset: items are (image, label).

    Image records are 1..header0[0]-1 when record 0 carries the identity range (flag > 0), else
    every key. ``labels`` (list[int]) reads every image header on first access (seek + 24-byte
    read each); ``num_classes`` comes from the identity range when present. Safe with DataLoader
    workers: each process opens its own file handle.
    """

    def __init__(self, rec_path, idx_path=None, transform=None):
        self.reader = RecordIOReader(rec_path, idx_path)
        self.transform = transform
        self.header0 = None
        if 0 in self.reader.offsets:
            h0, _ = self.reader.read_header(0)
            if h0.flag > 0:
                lab = np.asarray(h0.label, dtype=np.float64).reshape(-1)[:2]
                n = len(self.reader.offsets)
                if (lab.size < 2 or not np.isfinite(lab).all() or (lab != np.floor(lab)).any()
                        or not 1 <= lab[0] <= lab[1] or lab[0] - 1 > n or lab[1] - lab[0] > n):
                    raise RecordIOError(f"{self.reader.rec_path}: record 0 at offset "
                                        f"{self.reader.offsets[0]} has identity range "
                                        f"{lab.tolist()}, expected integers (first, end) with "
                                        f"1 <= first <= end, for at most {n} records (the .idx)")
                self.header0 = (int(lab[0]), int(lab[1]))
        if self.header0 is not None:
            self.keys = list(range(1, self.header0[0]))
            missing = [k for k in self.keys if k not in self.reader.offsets]
            if missing:
                raise RecordIOError(f"{self.reader.idx_path}: record 0 announces image records "
                                    f"1..{self.header0[0] - 1} but key {missing[0]} is missing")
        else:
            self.keys = sorted(self.reader.keys)
        self._labels = None

    def __len__(self):
        return len(self.keys)

    def _header(self, key):
        header, data = self.reader.read_header(key)
        label = header.label
        label = float(np.asarray(label).reshape(-1)[0]) if header.flag > 0 else float(label)
        return header, self._check_label(key, label), data

    def _check_label(self, key, label: float) -> int:
        """``label`` as an int, or RecordIOError naming the file and record: labels are
        integers >= 0, and below the number of identities record 0 announces (when it does)."""
        where = f"{self.reader.rec_path}: record {key} at offset {self.reader.offsets[key]}"
        if not math.isfinite(label):
            raise RecordIOError(f"{where}: label is {label}, not a number")
        if label != math.floor(label):
            raise RecordIOError(f"{where}: label {label} is not an integer identity")
        if label < 0:
            raise RecordIOError(f"{where}: label {label:g} is negative")
        if self.header0 is not None and label >= self.num_classes:
            raise RecordIOError(f"{where}: label {label:g} is out of range: record 0 announces "
                                f"{self.num_classes} identities (labels 0..{self.num_classes - 1})")
        return int(label)

    @property
    def labels(self):
        if self._labels is None:
            self._labels = [self._header(k)[1] for k in self.keys]
        return self._labels

    @property
    def num_classes(self):
        if self.header0 is not None:
            return self.header0[1] - self.header0[0]
        return max(self.labels) + 1 if self.keys else 0

    def identity_range(self, label):
        """(first, end) image keys of identity ``label`` from its identity record (insightface)."""
        if self.header0 is None:
            raise KeyError(f"{self.reader.rec_path}: no identity records (record 0 has flag 0)")
        if not 0 <= int(label) < self.num_classes:
            raise KeyError(f"{self.reader.rec_path}: no identity {label} (record 0 announces "
                           f"{self.num_classes})")
        key = self.header0[0] + int(label)
        h, _ = self.reader.read_header(key)
        rng = np.asarray(h.label, dtype=np.float64).reshape(-1)[:2] if h.flag >= 2 else None
        if (rng is None or not np.isfinite(rng).all() or (rng != np.floor(rng)).any()
                or not 1 <= rng[0] <= rng[1] <= self.header0[0]):
            raise RecordIOError(f"{self.reader.rec_path}: identity record {key} at offset "
                                f"{self.reader.offsets[key]} holds {h.label!r}, expected the "
                                f"image range (first, end) within 1..{self.header0[0]}")
        return int(rng[0]), int(rng[1])

    def raw(self, idx):
        """(label, encoded image bytes) of item ``idx``, exactly as stored."""
        _, label, data = self._header(self.keys[idx])
        return label, data

    def __getitem__(self, idx):
        key = self.keys[idx]
        _, label, data = self._header(key)
        img = decode_rgb(data, f"{self.reader.rec_path}: record {key} at offset "
                               f"{self.reader.offsets[key]}")
        if self.transform is not None:
            img = self.transform(img)
        return img, label


def pack_images(paths, labels, out_rec, idx_path=None, verify=True):
    """Pack image files with integer labels into insightface RecordIO (``out_rec`` + ``.idx``).

    Image bytes are stored verbatim (no re-encoding: the reader returns them byte for byte).
    Images are grouped by label in the order given (insightface needs each identity's records
    contiguous); labels are renumbered 0..K-1 in sorted order of the labels that remain, so an
    identity whose images were all skipped leaves no gap. Identity records and record 0 follow
    insightface. With ``verify`` every image is decoded first; undecodable files are skipped and
    reported. Returns a dict: num_images, num_classes, labels (the original label of each new
    one), skipped (list of (path, reason)), rec, idx.

    Both files are written under hidden temp names (zoo._io.atomic_write_files) and renamed over
    ``out_rec`` / the .idx only when complete, the .rec first: an interrupted pack leaves the old
    files (or none), never a loadable subset.
    """
    skipped, kept = [], []
    for p, y in zip(paths, labels):
        if verify:
            try:
                load_rgb(p)
            except (ImageDecodeError, OSError) as e:
                skipped.append((str(p), str(e)))
                continue
        kept.append((Path(p), int(y)))
    used = sorted({y for _, y in kept})
    remap = {y: k for k, y in enumerate(used)}
    kept.sort(key=lambda item: remap[item[1]])  # stable: keeps the given order within a label
    rec_path = Path(out_rec)
    idx_path = Path(idx_path) if idx_path else rec_path.with_suffix(".idx")
    for folder in {rec_path.parent, idx_path.parent}:
        folder.mkdir(parents=True, exist_ok=True)
        sweep_stale_tmp(folder)

    def write_both(tmp_rec, tmp_idx):
        ranges = {}
        with RecordIOWriter(tmp_rec, tmp_idx) as w:
            key = 1
            for p, y in kept:
                lab = remap[y]
                w.write_image(key, lab, p.read_bytes())
                first, _ = ranges.get(lab, (key, key))
                ranges[lab] = (first, key + 1)
                key += 1
            id_first = key
            for lab in range(len(used)):
                w.write(key, pack_record(IRHeader(0, ranges[lab], key, 0)))
                key += 1
            w.write(0, pack_record(IRHeader(0, (id_first, key), 0, 0)))

    def write_idx(tmp_idx):  # the .rec is renamed (inner call) just before the .idx
        atomic_write_files(rec_path.parent,
                           [(rec_path.name, lambda tmp_rec: write_both(tmp_rec, tmp_idx))])

    atomic_write_files(idx_path.parent, [(idx_path.name, write_idx)])
    return {"num_images": len(kept), "num_classes": len(used), "labels": used,
            "skipped": skipped, "rec": str(rec_path), "idx": str(idx_path)}


def pack_folder(folder, out_rec, idx_path=None, verify=True):
    """Pack ``folder/<identity>/<image>`` (IdentityFolder order) into insightface RecordIO.

    As :func:`pack_images`; the returned dict also has ``identities`` (folder name per label).
    """
    paths, labels, identities = scan_identity_folder(folder)
    report = pack_images(paths, labels, out_rec, idx_path, verify)
    report["identities"] = [identities[y] for y in report["labels"]]
    return report
