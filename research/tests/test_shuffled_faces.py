"""Part-shuffled faces (the ICNN paper's control images) as content-free training images
(research.shuffled_faces, through research.hooks.ExperimentHook)."""
import dataclasses

import pytest
import torch

import research.hooks
from research.hooks import ExperimentHook
from research.shuffled_faces import patch_shuffled, shuffled_face_count
from zoo.engine import train
from zoo.train_config import TrainConfig, build_train_dataset, resolve_config

TINY = dict(arch="vgg13", preset="cpu", width=1 / 16, input_size=32, batch_norm=False,
            embedding_bn=False, embedding_dim=16, flip=False, register=False, evaluate=False,
            progress=False, orl_num_train=4, batch_size=8, lr=0.05, templates="400", tau=1.0,
            loss="ecloss", content_free=1.0, epochs=1)


def _tiles(img, grid):
    c, h, w = img.shape
    th, tw = h // grid, w // grid
    return [img[:, r * th:(r + 1) * th, q * tw:(q + 1) * tw] for r in range(grid)
            for q in range(grid)]


def test_patch_shuffled_moves_whole_tiles_and_keeps_the_rest():
    x = torch.arange(3 * 2 * 9 * 10, dtype=torch.float32).reshape(3, 2, 9, 10)  # all distinct
    y = patch_shuffled(x, torch.Generator().manual_seed(0), grid=2)
    assert y.shape == x.shape
    # 9 x 10 images in 2 x 2 tiles of 4 x 5: row 8 is left over and stays where it is
    torch.testing.assert_close(y[:, :, 8, :], x[:, :, 8, :])
    for i in range(3):
        src = _tiles(x[i, :, :8, :], 2)
        out = _tiles(y[i, :, :8, :], 2)
        # every output tile is one input tile, each used once, and not all in place
        idx = [next(k for k, s in enumerate(src) if torch.equal(s, t)) for t in out]
        assert sorted(idx) == [0, 1, 2, 3]
        assert idx != [0, 1, 2, 3]
    again = patch_shuffled(x, torch.Generator().manual_seed(0), grid=2)
    torch.testing.assert_close(again, y)


def test_patch_shuffled_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected"):
        patch_shuffled(torch.zeros(2, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match="cannot cut"):
        patch_shuffled(torch.zeros(1, 3, 3, 3), torch.Generator(), grid=4)


def test_shuffled_face_count():
    assert shuffled_face_count(4, 0.5) == 2
    assert shuffled_face_count(4, 0.0) == 0
    assert shuffled_face_count(3, 1.0) == 3


def test_training_puts_shuffled_faces_among_the_content_free_images(monkeypatch, tmp_path):
    seen = []

    def spy(images, generator, grid=4):
        seen.append(images.clone())
        return patch_shuffled(images, generator, grid)
    monkeypatch.setattr(research.hooks, "patch_shuffled", spy)
    train(TrainConfig(**TINY, max_steps=2, out=str(tmp_path / "a")),
          ExperimentHook(shuffled_faces=0.5))
    # batch 8 -> 2 content-free images per step, half of them a shuffled face
    assert [len(s) for s in seen] == [1, 1]
    assert all(float(s.std()) > 0 for s in seen)        # faces, not blank images
    seen.clear()
    train(TrainConfig(**TINY, max_steps=2, out=str(tmp_path / "b")),
          ExperimentHook(shuffled_faces=0.0))
    assert seen == []


def test_shuffled_faces_options(monkeypatch, tmp_path):
    hook = ExperimentHook(shuffled_faces=0.5)
    no_free = resolve_config(TrainConfig(**{**TINY, "content_free": 0.0}), False)
    with pytest.raises(ValueError, match="needs --content-free"):
        hook.wrap_dataset(build_train_dataset(no_free), no_free)
    with pytest.raises(ValueError, match="shuffled_faces must be"):
        ExperimentHook(shuffled_faces=1.5)
    # a softmax run has no content-free images, so it takes no shuffled faces either
    soft = resolve_config(TrainConfig(**{**TINY, "loss": "softmax", "content_free": None}), False)
    assert soft.content_free == 0.0
    hook.wrap_dataset(build_train_dataset(soft), soft)        # no error: nothing to replace
    seen = []
    monkeypatch.setattr(research.hooks, "patch_shuffled", lambda *a: seen.append(a))
    train(dataclasses.replace(soft, max_steps=1, out=str(tmp_path)), hook)
    assert seen == []
    # the default (no hook, or the hook's default) takes none
    assert ExperimentHook().shuffled_faces == 0.0
