"""Tiny zoo models for the registry and hub tests (test_registry, test_hub)."""
import torch

import zoo

TINY = dict(width=1 / 16, input_size=64, embedding_dim=16)


def tiny(name="tiny-a", depth=13, seed=0, **kw):
    torch.manual_seed(seed)
    m = zoo.create(f"vgg{depth}-ecloss", name=name, **{**TINY, **kw})
    if m.batch_norm:  # move BN running stats off their init so the round trip must carry them
        m.train()
        with torch.no_grad():
            m(torch.randn(4, 3, m.input_size, m.input_size))
    return m.eval()


def out(m, seed=123):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 3, m.input_size, m.input_size, generator=g)
    with torch.no_grad():
        return m(x)
