"""The off-head term (research.off_head.off_head_share), the head masks that feed it and the
hook that adds it to training (research.hooks.ExperimentHook)."""
import numpy as np
import pytest
import torch
from PIL import ImageOps

import research.hooks
from research.background import RandomBackground, head_mask
from research.hooks import ExperimentHook
from research.off_head import off_head_share
from zoo.data.orl import ORLFaces
from zoo.engine import train
from zoo.train_config import TrainConfig, build_train_dataset, resolve_config

TINY = dict(arch="vgg13", preset="cpu", width=1 / 16, input_size=32, batch_norm=False,
            embedding_bn=False, embedding_dim=16, register=False, evaluate=False,
            progress=False, orl_num_train=4, batch_size=8, lr=0.05, templates="400", tau=1.0,
            loss="ecloss", content_free=1.0, epochs=1)


def _brute_force(fmap, head):
    """float64 loops: per (image, channel) map that fires, off-head activation / activation."""
    shares = []
    for b in range(fmap.shape[0]):
        for c in range(fmap.shape[1]):
            total = off = 0.0
            for i in range(fmap.shape[2]):
                for j in range(fmap.shape[3]):
                    a = max(float(fmap[b, c, i, j]), 0.0)
                    total += a
                    off += a * (1.0 - float(head[b, i, j]))
            shares.append(off / total if total > 1e-6 else 0.0)
    return sum(shares) / len(shares)


def test_off_head_share_by_hand():
    head = torch.zeros(1, 3, 3)
    head[0, 1, 1] = 1.0                                     # only the centre cell is head
    on = torch.zeros(1, 1, 3, 3)
    on[0, 0, 1, 1] = 2.0
    off = torch.zeros(1, 1, 3, 3)
    off[0, 0, 0, 0] = 5.0
    half = torch.zeros(1, 1, 3, 3)
    half[0, 0, 1, 1] = 1.0
    half[0, 0, 2, 2] = 1.0
    assert float(off_head_share(on, head)) == pytest.approx(0.0)
    assert float(off_head_share(off, head)) == pytest.approx(1.0)
    assert float(off_head_share(half, head)) == pytest.approx(0.5)
    assert float(off_head_share(torch.zeros(1, 1, 3, 3), head)) == 0.0   # silence is fine


def test_off_head_share_against_brute_force():
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    fmap[1, 2] = -1.0                                        # a silent map
    head = torch.rand(3, 5, 5, generator=g, dtype=torch.float64)
    assert float(off_head_share(fmap, head)) == pytest.approx(_brute_force(fmap, head), abs=1e-6)
    x = fmap.clone().float().requires_grad_(True)
    off_head_share(x, head.float()).backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="do not match"):
        off_head_share(fmap, head[:, :4])


def test_head_masks_flip_with_the_image():
    orl = ORLFaces("train", transform=None, num_train=25, num_val=5)
    ds = RandomBackground(orl, 0.0, transform=None, head_size=24, flip=True)
    img0 = orl.load(0)
    full = torch.from_numpy(head_mask(orl.landmarks(0), img0.height, img0.width))
    want = torch.nn.functional.interpolate(full[None, None], size=(24, 24), mode="bilinear",
                                           align_corners=False)[0, 0]
    seen = set()
    torch.manual_seed(0)
    for _ in range(12):
        img, label, head = ds[0]
        assert label == orl.labels[0] and head.shape == (24, 24)
        flipped = np.array_equal(np.asarray(img), np.asarray(ImageOps.mirror(img0)))
        assert flipped or np.array_equal(np.asarray(img), np.asarray(img0))
        torch.testing.assert_close(head, want.flip(-1) if flipped else want)
        seen.add(flipped)
    assert seen == {True, False}
    with pytest.raises(ValueError, match="head_size"):
        RandomBackground(orl, 0.0, flip=True)


def test_off_head_options():
    hook = ExperimentHook(off_head=1.0)
    cfg = resolve_config(TrainConfig(**TINY), False)
    ds = hook.wrap_dataset(build_train_dataset(cfg), cfg)
    img, label, head = ds[0]
    assert img.shape == (3, 32, 32) and head.shape == (32, 32)
    shifted = resolve_config(TrainConfig(**TINY, translate=0.1), False)
    with pytest.raises(ValueError, match="translate"):
        hook.wrap_dataset(build_train_dataset(shifted), shifted)
    with pytest.raises(ValueError, match="off_head must be"):
        ExperimentHook(off_head=-1.0)


def test_training_adds_the_off_head_term(monkeypatch, tmp_path):
    calls = []

    def spy(fmap, head, eps=1e-6):
        calls.append((tuple(fmap.shape), tuple(head.shape)))
        return off_head_share(fmap, head, eps)
    monkeypatch.setattr(research.hooks, "off_head_share", spy)
    res = train(TrainConfig(**TINY, max_steps=2, out=str(tmp_path)),
                ExperimentHook(off_head=1.0, background=0.5))
    # 8 faces per step (not the 2 content-free images), 2 x 2 target maps at 32 px
    assert len(calls) == 2 and all(f[0] == 8 and f[2:] == (2, 2) and h == (8, 2, 2)
                                   for f, h in calls)
    # the run says which hook trained it
    assert res["hook"]["hook"] == "research.hooks.ExperimentHook"
    assert res["hook"]["off_head"] == 1.0 and res["hook"]["background"] == 0.5
