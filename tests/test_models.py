"""VGG face networks and classifier heads."""
import math

import pytest
import torch
import torch.nn.functional as F

from zoo.heads import ArcFaceHead, CosFaceHead, SoftmaxHead, create_head
from zoo.models import VGGFace

CONVS = {13: 10, 16: 13, 19: 16}


@pytest.mark.parametrize("depth", [13, 16, 19])
@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("size", [112, 224])
def test_vgg_shapes_quarter_width(depth, bn, size):
    m = VGGFace(depth, batch_norm=bn, width=0.25, input_size=size, embedding_dim=64).eval()
    convs = [layer for layer in m.features if isinstance(layer, torch.nn.Conv2d)]
    assert len(convs) == CONVS[depth]
    assert isinstance(m.features[-1], torch.nn.ReLU)  # the target layer is post-ReLU
    with torch.no_grad():
        emb, fmap = m.forward_with_features(torch.randn(2, 3, size, size))
    assert fmap.shape == (2, 128, size // 16, size // 16)
    assert emb.shape == (2, 64)
    assert (fmap >= 0).all()


def test_vgg16_full_width_224_target_is_14x14x512():
    m = VGGFace(16, width=1.0, input_size=224).eval()
    with torch.no_grad():
        fmap = m.forward_features(torch.randn(1, 3, 224, 224))
    assert fmap.shape == (1, 512, 14, 14)
    assert m.forward_head(fmap).shape == (1, 512)
    n_conv = sum(p.numel() for n, p in m.named_parameters() if n.startswith("features"))
    assert n_conv == 14_714_688  # torchvision's vgg16 conv parameters


def test_vgg_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        VGGFace(11)
    with pytest.raises(ValueError, match="multiple of 16"):
        VGGFace(16, input_size=100)
    with pytest.raises(ValueError, match="expected images"):
        VGGFace(13, width=0.125, input_size=64)(torch.randn(1, 3, 32, 32))


def test_softmax_head_is_linear():
    h = SoftmaxHead(8, 5)
    e = torch.randn(3, 8)
    torch.testing.assert_close(h(e, torch.tensor([0, 1, 2])), e @ h.fc.weight.t() + h.fc.bias)


def _cos(h, e):
    return F.normalize(e) @ F.normalize(h.weight).t()


def test_cosface_margin():
    torch.manual_seed(0)
    h = CosFaceHead(8, 5, scale=30.0, margin=0.35)
    e, y = torch.randn(4, 8), torch.tensor([0, 3, 3, 1])
    logits, cos = h(e, y), _cos(h, e)
    for i in range(4):
        for k in range(5):
            want = 30.0 * (cos[i, k] - 0.35 if k == y[i] else cos[i, k])
            assert logits[i, k].item() == pytest.approx(want.item(), abs=1e-5)
    torch.testing.assert_close(h(e), 30.0 * cos)  # no labels: no margin


def test_arcface_margin():
    torch.manual_seed(1)
    h = ArcFaceHead(8, 5, scale=64.0, margin=0.5)
    e, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.no_grad():  # put one target far away (theta > pi - m) to exercise the fallback
        h.weight[0] = -e[5] * 3
    logits, cos = h(e, y), _cos(h, e)
    for i in range(6):
        c = cos[i, y[i]].item()
        theta = math.acos(max(-1.0, min(1.0, c)))
        want = (math.cos(theta + 0.5) if theta + 0.5 <= math.pi
                else c - math.sin(math.pi - 0.5) * 0.5)
        assert logits[i, y[i]].item() == pytest.approx(64.0 * want, abs=1e-3)
        assert logits[i, y[i]].item() < 64.0 * c  # the margin lowers the target logit
        others = [k for k in range(5) if k != y[i]]
        torch.testing.assert_close(logits[i, others], 64.0 * cos[i, others])
    assert math.acos(max(-1.0, cos[5, 0].item())) > math.pi - 0.5


def test_create_head():
    assert isinstance(create_head("arcface", 8, 3), ArcFaceHead)
    with pytest.raises(ValueError, match="unknown head"):
        create_head("sphereface", 8, 3)
