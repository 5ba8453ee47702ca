"""Issue 12, items 1-4: one image decoding path for every decoder (zoo's files, RecordIO and
.bin records, zoo.prep, `zoo.data pack`, the runtime's export.images): decompression bombs are
refused as undecodable, named files; EXIF orientation is applied; 16-bit grey and float images
are scaled, not clipped; images below MIN_IMAGE_SIZE are refused. Plus a fuzz test of random
and mutated image files through every decoder (documented exception types, bounded memory)."""
import io
import json
import resource
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from export.images import MIN_IMAGE_SIZE, ImageError, decode_image, load_image, preprocess
from zoo.data import orl_root
from zoo.data.__main__ import main as data_cli
from zoo.data.images import ImageDecodeError, load_rgb
from zoo.data.insightface_bin import decode_image_bytes, read_bin, write_bin
from zoo.data.recordio import RecordIODataset, pack_images
from zoo.prep import crop_faces


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def bomb_png(width=20000, height=20000) -> bytes:
    """A tiny PNG whose (valid, CRC-checked) header claims width x height grey pixels."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                                 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""))


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _face() -> Image.Image:
    with Image.open(orl_root() / "s1" / "1.pgm") as im:
        return im.convert("RGB")


# The error level (4.5x Pillow's limit) and the warning level (between 1x and 2x the limit):
# Pillow raises DecompressionBombError (not an OSError) for the first, only warns for the second.
BOMBS = [(20000, 20000), (10000, 10000)]


# ----------------------------------------------------------------------------------------------
# 1. decompression bombs
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", BOMBS)
def test_bomb_is_refused_by_every_decoder_naming_it(tmp_path, size):
    data = bomb_png(*size)
    assert len(data) < 100
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError, match=r"bomb\.png: cannot decode image: .*decompression"):
        load_rgb(path)
    with pytest.raises(ImageError, match=r"bomb\.png: refused as a possible decompression bomb"):
        load_image(path)
    with pytest.raises(ImageError, match=r"bomb\.png: .*decompression bomb"):
        preprocess([path], 64)
    with pytest.raises(ImageDecodeError, match=r"x\.bin: image record 1: .*decompression bomb"):
        decode_image_bytes(data, "x.bin: image record 1")
    write_bin(tmp_path / "pairs.bin", [_png(_face()), data], [True])
    with pytest.raises(ValueError, match=r"pairs\.bin: image record 1: .*decompression bomb"):
        read_bin(tmp_path / "pairs.bin")
    face = tmp_path / "face.png"
    _face().save(face)
    pack_images([face, path], [0, 0], tmp_path / "b.rec", verify=False)  # stored verbatim
    ds = RecordIODataset(tmp_path / "b.rec")
    assert ds[0][0].size == (92, 112)
    with pytest.raises(ImageDecodeError, match=r"b\.rec: record 2 at offset \d+: .*decompression"):
        ds[1]


class _FakeMTCNN:
    """One face box in the middle of every image (the decoding, not MTCNN, is under test)."""

    def __init__(self):
        self.seen = []

    def detect(self, imgs, landmarks=True):
        self.seen += [im.size for im in imgs]
        boxes = [np.array([[im.width * 0.25, im.height * 0.25, im.width * 0.75,
                            im.height * 0.75]]) for im in imgs]
        pts = [np.full((1, 5, 2), 10.0) for _ in imgs]
        return boxes, [np.array([0.99]) for _ in imgs], pts


def test_prep_reports_the_bomb_and_crops_the_rest(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    _face().save(src / "a" / "1.png")
    _face().save(src / "a" / "3.png")
    (src / "a" / "2.png").write_bytes(bomb_png())
    rep = crop_faces(src, tmp_path / "dst", size=32, progress=False, mtcnn=_FakeMTCNN())
    assert (rep.num_images, rep.num_cropped, rep.num_undecodable) == (3, 2, 1)
    (fail,) = rep.failures
    assert fail["src"] == "a/2.png" and "decompression bomb" in fail["reason"]
    saved = json.loads((tmp_path / "dst" / "report.json").read_text())
    assert saved["num_undecodable"] == 1 and saved["num_cropped"] == 2
    assert sorted(p.name for p in (tmp_path / "dst" / "a").iterdir()) == ["1.jpg", "3.jpg"]


def test_pack_cli_skips_the_bomb_and_says_so(tmp_path, capsys):
    folder = tmp_path / "ids"
    for ident in ("x", "y"):
        (folder / ident).mkdir(parents=True)
        _face().save(folder / ident / "1.png")
    (folder / "y" / "2.png").write_bytes(bomb_png())
    assert data_cli(["pack", str(folder), str(tmp_path / "o.rec")]) == 0
    out = capsys.readouterr()
    assert "1 files skipped" in out.out and "2.png" in out.err and "decompression" in out.err
    ds = RecordIODataset(tmp_path / "o.rec")
    assert len(ds) == 2 and ds.num_classes == 2


# ----------------------------------------------------------------------------------------------
# 2. EXIF orientation
# ----------------------------------------------------------------------------------------------

def _upright() -> Image.Image:
    """A 48 x 32 RGB picture with no symmetry (a wrong rotation or mirror cannot match)."""
    y, x = np.mgrid[0:32, 0:48]
    a = np.stack([x * 5, y * 7, (x * y) % 256], axis=2).astype(np.uint8)
    return Image.fromarray(a, "RGB")


def _with_orientation(img: Image.Image, fmt: str, orientation: int = 6) -> bytes:
    """``img`` stored the way a camera held sideways stores it: pixels rotated, and the EXIF
    orientation tag saying how to turn them back (6: rotate 90 degrees clockwise to view)."""
    stored = img.transpose(Image.Transpose.ROTATE_90)   # the sensor's pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_applied_by_every_decoder(tmp_path, fmt):
    want = np.asarray(_upright(), dtype=np.float64)
    data = _with_orientation(_upright(), fmt)
    path = tmp_path / ("photo.png" if fmt == "PNG" else "photo.jpg")
    path.write_bytes(data)
    tol = 0 if fmt == "PNG" else 12  # JPEG is lossy
    pack_images([path], [0], tmp_path / "p.rec")
    decoded = {"load_rgb": load_rgb(path), "load_image": load_image(path),
               "pil": load_image(Image.open(path)), "bin": decode_image_bytes(data),
               "rec": RecordIODataset(tmp_path / "p.rec")[0][0]}
    for how, img in decoded.items():
        assert img.size == (48, 32), how
        assert np.abs(np.asarray(img, dtype=np.float64) - want).mean() <= tol, how


def test_prep_finds_the_upright_face_of_a_rotated_photo(tmp_path):
    pytest.importorskip("facenet_pytorch")
    src = tmp_path / "src" / "s1"
    src.mkdir(parents=True)
    face = _face().resize((184, 224), Image.BILINEAR)  # as tests/test_prep.py: MTCNN finds it
    (src / "face.jpg").write_bytes(_with_orientation(face, "JPEG"))
    rep = crop_faces(tmp_path / "src", tmp_path / "dst", size=64, device="cpu", progress=False)
    assert rep.num_cropped == 1, rep.failures
    m = json.loads((tmp_path / "dst" / "manifest.jsonl").read_text().splitlines()[0])
    x1, y1, x2, y2 = m["box"]
    assert x2 <= 184 + 20 and y2 <= 224 + 20   # coordinates of the upright 184 x 224 photo
    eyes, nose = np.array(m["landmarks"][:2]), m["landmarks"][2]
    mouth = np.array(m["landmarks"][3:])
    assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()   # an upright face


# ----------------------------------------------------------------------------------------------
# 3. 16-bit grey and float images
# ----------------------------------------------------------------------------------------------

def _ramp16() -> np.ndarray:
    return (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)


def test_16bit_grey_is_scaled_not_clipped_everywhere(tmp_path):
    a = _ramp16()
    want = np.rint(a / 257.0).astype(np.uint8)       # 0..65535 -> 0..255, the full range
    path = tmp_path / "grey16.png"
    Image.fromarray(a).save(path)
    with Image.open(path) as im:
        assert im.mode == "I;16"
    pack_images([path], [0], tmp_path / "p.rec")
    decoded = {"load_rgb": load_rgb(path), "load_image": load_image(path),
               "bin": decode_image_bytes(path.read_bytes()),
               "rec": RecordIODataset(tmp_path / "p.rec")[0][0],
               "pil I;16": load_image(Image.fromarray(a)),
               "pil I": load_image(Image.fromarray(a.astype(np.int32))),
               "uint16 array": load_image(a)}
    for how, img in decoded.items():
        got = np.asarray(img)
        assert img.mode == "RGB" and got.shape == (64, 64, 3), how
        np.testing.assert_array_equal(got[..., 0], want, err_msg=how)
        assert (got == 255).mean() < 0.01, how   # clipping made 99.6% of the pixels white
    # a PGM with maxval 1023 (Pillow scales it to 16 bits): its maximum stays white, not more
    pgm = tmp_path / "ten_bit.pgm"
    pgm.write_bytes(b"P5\n16 16\n1023\n" + np.linspace(0, 1023, 256).astype(">u2").tobytes())
    got = np.asarray(load_rgb(pgm))[..., 0].ravel()
    assert got[0] == 0 and got[-1] == 255 and np.all(np.diff(got.astype(int)) >= 0)
    assert (got == 255).sum() == 1


def test_integer_image_outside_16_bits_is_refused():
    img = Image.fromarray(np.full((32, 32), 70000, np.int32))
    with pytest.raises(ImageError, match=r"PIL image: integer image \(mode I\) with values "
                                         r"70000\.\.70000 outside the 16-bit range"):
        load_image(img)


def test_float_images_agree_with_float_arrays(tmp_path):
    f = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    from_array = np.asarray(load_image(f))
    assert from_array[..., 0].max() == 255 and from_array[..., 0].min() == 0
    np.testing.assert_array_equal(np.asarray(load_image(Image.fromarray(f, mode="F"))),
                                  from_array)
    tif = tmp_path / "float.tif"
    Image.fromarray(f, mode="F").save(tif)
    np.testing.assert_array_equal(np.asarray(load_rgb(tif)), from_array)
    np.testing.assert_array_equal(np.asarray(load_image(tif)), from_array)
    np.testing.assert_array_equal(preprocess([Image.fromarray(f, mode="F")], 32),
                                  preprocess([f], 32))
    # Out of [0, 1]: refused as for arrays, since no scale can be guessed (0..255? 0..65535?)
    for bad in (f * 255, f - 0.5, np.where(f > 0.5, np.nan, f).astype(np.float32)):
        with pytest.raises(ImageError, match=r"PIL image #3: float arrays must hold values in "
                                             r"\[0, 1\]"):
            load_image(Image.fromarray(bad, mode="F"), 3)
    Image.fromarray(f * 255, mode="F").save(tif)
    with pytest.raises(ImageDecodeError, match=r"float\.tif: cannot decode image: float arrays"):
        load_rgb(tif)


# ----------------------------------------------------------------------------------------------
# 4. minimum size
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(1, 1), (15, 40), (40, 15)])
def test_images_below_the_minimum_size_are_refused(tmp_path, size):
    assert MIN_IMAGE_SIZE == 16
    w, h = size
    path = tmp_path / "tiny.png"
    Image.new("RGB", size, (90, 90, 90)).save(path)
    msg = rf"image is {w}x{h} pixels, smaller than the minimum 16x16"
    with pytest.raises(ImageDecodeError, match=r"tiny\.png: cannot decode image: " + msg):
        load_rgb(path)
    with pytest.raises(ImageError, match=r"tiny\.png: " + msg):
        load_image(path)
    with pytest.raises(ImageError, match=r"ndarray #2: " + msg):
        preprocess([np.zeros((16, 16), np.uint8)] * 2 + [np.zeros((h, w), np.uint8)], 64)
    with pytest.raises(ImageError, match=r"PIL image: " + msg):
        load_image(Image.new("L", size))
    with pytest.raises(ImageDecodeError, match=r"rec 5: cannot decode image: " + msg):
        decode_image_bytes(path.read_bytes(), "rec 5")


def test_the_minimum_size_itself_is_accepted(tmp_path):
    path = tmp_path / "small.png"
    Image.new("L", (16, 16), 7).save(path)
    assert load_rgb(path).size == load_image(path).size == (16, 16)
    assert preprocess([np.zeros((16, 16, 3), np.uint8)], 64).shape == (1, 3, 64, 64)


# ----------------------------------------------------------------------------------------------
# fuzz: random and mutated image files through every decoder
# ----------------------------------------------------------------------------------------------

def _seeds():
    """Valid encodings of small images in every format the decoders accept."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), "RGB")
    grey_f = Image.fromarray(np.linspace(0, 1, 1600, dtype=np.float32).reshape(40, 40), "F")
    out = []
    for fmt, img in [("PNG", rgb), ("PNG", rgb.convert("L")), ("PNG", rgb.convert("RGBA")),
                     ("PNG", Image.fromarray(_ramp16())), ("PNG", rgb.convert("P")),
                     ("JPEG", rgb), ("JPEG", rgb.convert("L")), ("GIF", rgb), ("BMP", rgb),
                     ("TIFF", rgb), ("TIFF", grey_f),
                     ("WEBP", rgb), ("PPM", rgb)]:
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        out.append(buf.getvalue())
    out.append(_with_orientation(_upright(), "JPEG"))
    return out


def _fuzz_cases(n_random=60, n_mutated=240):
    rng = np.random.default_rng(12)
    seeds = _seeds()
    cases = [bomb_png(*s) for s in BOMBS] + [bomb_png(2 ** 31 - 1, 2 ** 31 - 1), bomb_png(1, 1),
                                            bomb_png(0, 0), b"", b"\x89PNG\r\n\x1a\n",
                                            b"\xff\xd8\xff"]
    for _ in range(n_random):
        cases.append(rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes())
    for i in range(n_mutated):
        data = bytearray(seeds[i % len(seeds)])
        kind = i % 4
        if kind == 0:      # truncated
            data = data[:int(rng.integers(1, len(data)))]
        elif kind == 1:    # header bytes flipped
            for _ in range(int(rng.integers(1, 6))):
                data[int(rng.integers(0, min(64, len(data))))] = int(rng.integers(0, 256))
        elif kind == 2:    # bytes anywhere flipped
            for _ in range(int(rng.integers(1, 20))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        else:              # the header claims another size (a bomb when it is large)
            data = _claim_size(data, int(rng.integers(1, 2 ** 16)), int(rng.integers(1, 2 ** 16)))
        cases.append(bytes(data))
    return cases


def _claim_size(data: bytearray, width: int, height: int) -> bytearray:
    """The image's header rewritten to claim width x height, still well-formed: PNG's IHDR with
    its CRC recomputed, JPEG's SOF marker; other formats get 4 bytes at a header offset."""
    if data.startswith(b"\x89PNG"):
        ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
        return data[:8] + _chunk(b"IHDR", ihdr) + data[33:]
    sof = data.find(b"\xff\xc0")
    if data.startswith(b"\xff\xd8") and sof > 0:
        data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
        return data
    data[16:20] = struct.pack(">I", width * height)
    return data


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


@pytest.mark.filterwarnings("ignore::UserWarning")   # Pillow's notes on corrupt TIFF/EXIF tags
def test_fuzz_every_decoder_raises_only_image_errors_with_bounded_memory(tmp_path, monkeypatch):
    # Memory per decoded image is bounded by the pixel limit (about 2 x 4 bytes x
    # PIL.Image.MAX_IMAGE_PIXELS at the peak: a 2 kB JPEG may legally claim 60 M pixels). The
    # decoders honour the limit as set, so a lower one here keeps this test's memory small
    # and checks that nothing is decoded beyond it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2 ** 22)
    cases = _fuzz_cases()
    assert len(cases) >= 300
    paths = []
    for k, data in enumerate(cases):
        p = tmp_path / f"case{k:03d}.png"
        p.write_bytes(data)
        paths.append(p)
    pack_images(paths, [0] * len(paths), tmp_path / "fuzz.rec", verify=False)
    rec = RecordIODataset(tmp_path / "fuzz.rec")
    assert len(rec) == len(cases)
    decoders = {
        "zoo load_rgb (folders, ORL, prep, pack)": lambda k: load_rgb(paths[k]),
        "export.images.load_image (runtime)": lambda k: load_image(paths[k]),
        "export.images.decode_image (bytes)": lambda k: decode_image(cases[k]),
        ".bin decode_image_bytes": lambda k: decode_image_bytes(cases[k], f"bin {k}"),
        "RecordIODataset": lambda k: rec[k][0],
    }
    before = _max_rss_mb()
    counts = {}
    for how, decode in decoders.items():
        ok = refused = 0
        for k in range(len(cases)):
            try:
                img = decode(k)
            except ImageError as e:   # ImageDecodeError is one; a ValueError naming the input
                assert str(e).strip() and e.problem, (how, k)
                refused += 1
            else:
                assert img.mode == "RGB" and min(img.size) >= MIN_IMAGE_SIZE, (how, k)
                ok += 1
        counts[how] = (ok, refused)
    # every decoder took the same decisions (one decoding path)
    assert len(set(counts.values())) == 1, counts
    ok, refused = next(iter(counts.values()))
    assert ok >= 10 and refused >= 200, counts
    # Bombs are refused from their headers, before any pixel is decoded.
    assert _max_rss_mb() - before < 150, (before, _max_rss_mb())
