"""Background randomisation (research.background): the head is kept, the rest replaced; the
hook (research.hooks.ExperimentHook) takes it only where there are landmarks."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from research.background import (
    RandomBackground,
    composite_background,
    head_mask,
    random_background,
)
from research.hooks import LAB_DEFAULTS, ExperimentHook
from zoo.data.orl import ORLFaces


@pytest.fixture(scope="module")
def orl():
    return ORLFaces("train", transform=None, num_train=25, num_val=5)


def test_head_mask_covers_the_face_not_the_corners(orl):
    img = orl.load(0)
    m = head_mask(orl.landmarks(0), img.height, img.width)
    assert m.shape == (img.height, img.width) and m.dtype == np.float32
    assert 0.0 <= m.min() and m.max() <= 1.0
    nose = orl.landmarks(0)[30].round().astype(int)                  # (x, y) of the nose tip
    assert m[nose[1], nose[0]] == pytest.approx(1.0)
    assert m[-1, 0] < 0.01 and m[-1, -1] < 0.01                        # ORL's lower corners
    soft = ((m > 0.05) & (m < 0.95)).sum()
    assert soft > 0                                                     # a feathered edge
    hard = head_mask(orl.landmarks(0), img.height, img.width, feather=0.0, grow=0.0)
    assert set(np.unique(hard)) <= {0.0, 1.0} and hard.sum() < m.sum()   # grown


def test_random_background_is_seeded_and_grey_when_asked():
    torch.manual_seed(5)
    a = random_background(40, 30, colour=False)
    torch.manual_seed(5)
    b = random_background(40, 30, colour=False)
    assert a.shape == (40, 30, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    torch.manual_seed(6)
    kinds = {random_background(16, 16).tobytes() for _ in range(20)}
    assert len(kinds) == 20                                             # not one fixed image


def test_composite_by_hand():
    img = Image.fromarray(np.full((4, 6, 3), 200, np.uint8))
    bg = np.full((4, 6, 3), 10, np.uint8)
    mask = np.zeros((4, 6), np.float32)
    mask[:, :3] = 1.0
    mask[:, 3] = 0.5
    out = np.asarray(composite_background(img, mask, bg))
    assert (out[:, :3] == 200).all() and (out[:, 4:] == 10).all() and (out[:, 3] == 105).all()
    with pytest.raises(ValueError, match="differ in size"):
        composite_background(img, mask[:, :5], bg)


def test_random_background_dataset(orl):
    torch.manual_seed(0)
    never = RandomBackground(orl, 0.0)
    assert never.num_classes == orl.num_classes and len(never) == len(orl)
    same, label = never[3]
    assert label == orl.labels[3]
    np.testing.assert_array_equal(np.asarray(same), np.asarray(orl.load(3)))
    always = RandomBackground(orl, 1.0)
    changed = np.asarray(always[3][0]).astype(int)
    orig = np.asarray(orl.load(3)).astype(int)
    m = always.mask(3)
    assert np.abs(changed - orig)[m > 0.999].max() <= 1                 # the head is kept
    assert np.abs(changed - orig)[m < 0.001].mean() > 5                  # the background is not
    assert (changed[..., 0] == changed[..., 1]).all()                   # grey face, grey background


def test_background_needs_landmarks(tmp_path):
    from zoo.data.folders import IdentityFolder
    for person in ("a", "b"):
        (tmp_path / person).mkdir()
        for k in range(2):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / person / f"{k}.png")
    with pytest.raises(ValueError, match="landmarks"):
        RandomBackground(IdentityFolder(tmp_path), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RandomBackground(ORLFaces("train", num_train=25, num_val=5), 1.5)
    from zoo.train_config import TrainConfig, build_train_dataset, resolve_config
    hook = ExperimentHook(background=0.5)
    cfg = resolve_config(TrainConfig(arch="vgg13", data=str(tmp_path)), False)
    with pytest.raises(ValueError, match="only --data orl"):
        hook.wrap_dataset(build_train_dataset(cfg), cfg)
    with pytest.raises(ValueError, match="background must be a probability"):
        ExperimentHook(background=2.0)
    orl_cfg = resolve_config(TrainConfig(arch="vgg13"), False)
    assert isinstance(hook.wrap_dataset(build_train_dataset(orl_cfg), orl_cfg), RandomBackground)
    off = ExperimentHook(background=0.0)
    assert not isinstance(off.wrap_dataset(build_train_dataset(orl_cfg), orl_cfg),
                          RandomBackground)


def test_no_preset_and_no_zoo_option_turns_a_lab_term_on():
    """The lab's terms are never a preset's (they were measured and not chosen): no preset and
    no TrainConfig field holds them, zoo.train has no option for them, and a lab setting given
    explicitly (research.train) still needs landmarks (test above)."""
    from zoo.config import PRESETS
    from zoo.train import build_parser
    from zoo.train_config import TrainConfig
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, preset in PRESETS.items():
        assert not set(preset) & set(LAB_DEFAULTS), name
    assert not fields & set(LAB_DEFAULTS)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["vgg13", "--background", "0.5"])
