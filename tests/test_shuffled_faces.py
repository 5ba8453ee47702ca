"""Part-shuffled faces (the ICNN paper's control images) as content-free training images."""
import pytest
import torch

import zoo.engine
from zoo.data.content_free import patch_shuffled, shuffled_face_count
from zoo.engine import TrainConfig, train
from zoo.train_config import resolve_config

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
    monkeypatch.setattr(zoo.engine, "patch_shuffled", spy)
    train(TrainConfig(**TINY, shuffled_faces=0.5, max_steps=2, out=str(tmp_path / "a")))
    # batch 8 -> 2 content-free images per step, half of them a shuffled face
    assert [len(s) for s in seen] == [1, 1]
    assert all(float(s.std()) > 0 for s in seen)        # faces, not blank images
    seen.clear()
    train(TrainConfig(**TINY, shuffled_faces=0.0, max_steps=2, out=str(tmp_path / "b")))
    assert seen == []


def test_shuffled_faces_options():
    with pytest.raises(ValueError, match="needs --content-free"):
        resolve_config(TrainConfig(**{**TINY, "content_free": 0.0}, shuffled_faces=0.5), False)
    with pytest.raises(ValueError, match="shuffled_faces must be"):
        resolve_config(TrainConfig(**TINY, shuffled_faces=1.5), False)
    soft = resolve_config(TrainConfig(**{**TINY, "loss": "softmax", "content_free": None},
                                      shuffled_faces=0.5), False)
    assert soft.shuffled_faces == 0.0
    assert resolve_config(TrainConfig(**TINY), False).shuffled_faces == 0.0   # the presets' value
