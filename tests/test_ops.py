"""The fused MI op (csrc/, zoo.ops) against the pure-PyTorch reference, computed in float64.

Tolerances (stated once, used everywhere):
* float64: |MI - ref| <= 1e-10 |ref| + 1e-13 and max|g - g_ref| <= 1e-10 max|g_ref| + 1e-12 S,
  S = max|T| / N the natural unit of dMI/dx. The absolute floors only matter where the exact
  value is 0 (M = 1, or the batch marginal with N = 1) or the gradient vanishes (one-hot p).
* float32: the op on float32 inputs against the float64 reference on the same (rounded) inputs:
  |MI - ref| <= 1e-5 |ref| + 2e-6 (nats; the float32 logits alone carry ~1e-6), and for the
  gradient max|g - g64| <= 1e-5 max|g64| + 2 e32 + 1e-7 S, where e32 is the error of the eager
  float32 reference on the same inputs: the op must be as accurate as eager float32 (both are
  limited by the float32 GEMM of logits that reach hundreds).

The extension as built (dispatch, threads, torch.compile, the fallback, the CUDA build and its
emulation on the CPU): tests/test_ops_extension.py.
"""
import math
import os

import pytest
import torch
from mi_cases import maps as _maps, template_rows as _templates, value_and_grad as _value_and_grad

from zoo import ops
from zoo.ecloss import mutual_information_reference

needs_ext = pytest.mark.skipif(not ops.extension_available(),
                               reason=f"zoo._C not built: {ops.extension_error()}")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MARGINALS = ["uniform", "batch"]


def _check_f64(x, t, marginal, device="cpu"):
    x, t = x.to(device), t.to(device)
    mi, g = _value_and_grad(ops.fused_mutual_information, x, t, marginal)
    mi_r, g_r = _value_and_grad(mutual_information_reference, x.cpu(), t.cpu(), marginal)
    mi, g = mi.cpu(), g.cpu()
    s = t.abs().max().item() / x.shape[0]
    assert abs(mi.item() - mi_r.item()) <= 1e-10 * abs(mi_r.item()) + 1e-13, \
        (mi.item(), mi_r.item())
    err = (g - g_r).abs().max().item()
    assert err <= 1e-10 * g_r.abs().max().item() + 1e-12 * s, (err, g_r.abs().max().item(), s)


def _check_f32(x64, t64, marginal, device="cpu"):
    x32, t32 = x64.float(), t64.float()
    mi, g = _value_and_grad(ops.fused_mutual_information, x32.to(device), t32.to(device), marginal)
    mi, g = mi.cpu(), g.cpu()
    assert mi.dtype == torch.float32 and g.dtype == torch.float32
    mi_t, g_t = _value_and_grad(mutual_information_reference, x32.double(), t32.double(), marginal)
    _, g_e = _value_and_grad(mutual_information_reference, x32, t32, marginal)
    s = t64.abs().max().item() / x64.shape[0]
    assert abs(mi.item() - mi_t.item()) <= 1e-5 * abs(mi_t.item()) + 2e-6, (mi.item(), mi_t.item())
    e32 = (g_e.double() - g_t).abs().max().item()
    err = (g.double() - g_t).abs().max().item()
    assert err <= 1e-5 * g_t.abs().max().item() + 2 * e32 + 1e-7 * s, (err, e32, s)


GRID = [(n, m, n_maps) for n in (7, 14, 28) for m in (1, 2, 400) for n_maps in (1, 3, 1000)]


@needs_ext
@pytest.mark.parametrize("marginal", MARGINALS)
@pytest.mark.parametrize("n,m,n_maps", GRID)
def test_parity_float64_and_float32(n, m, n_maps, marginal):
    # tau 0.3 keeps the posteriors between uniform and one-hot, so the MI is well conditioned.
    t = _templates(n, m, tau=0.3)
    x = _maps(n_maps, n, seed=n * 10007 + m * 101 + n_maps)
    _check_f64(x, t, marginal)
    _check_f32(x, t, marginal)


@needs_ext
@pytest.mark.parametrize("marginal", MARGINALS)
@pytest.mark.parametrize("n_maps", [1, 3, 16])
def test_parity_full_template_set(n_maps, marginal):
    t = _templates(14, "full", tau=0.3)
    assert t.shape[0] == 19307
    x = _maps(n_maps, 14, seed=n_maps)
    _check_f64(x, t, marginal)
    _check_f32(x, t, marginal)


@needs_ext
@pytest.mark.parametrize("marginal", MARGINALS)
@pytest.mark.parametrize("tau", [1e-3, 1.0])
def test_parity_paper_scale(tau, marginal):
    # The paper's tau = 1e-3 on post-ReLU maps of scale ~1: MI ~ 1e-4, near the uniform limit.
    t = _templates(14, 400, tau=tau)
    x = torch.relu(torch.randn(64, 196, generator=torch.Generator().manual_seed(3),
                               dtype=torch.float64))
    _check_f64(x, t, marginal)


@needs_ext
@pytest.mark.parametrize("marginal", MARGINALS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_no_overflow_with_large_activations(marginal, dtype):
    # tau = 10 and activations ~100: logits up to ~1e5; exp of them would overflow float64 too.
    t = _templates(14, 400, tau=10.0)
    x = _maps(50, 14, seed=11, scale=200.0)
    mi, g = _value_and_grad(ops.fused_mutual_information, x.to(dtype), t.to(dtype), marginal)
    assert torch.isfinite(mi) and torch.isfinite(g).all()
    mi_t, g_t = _value_and_grad(mutual_information_reference, x.to(dtype).double(),
                                t.to(dtype).double(), marginal)
    assert mi.item() > 0.5 * math.log(400) if marginal == "uniform" else mi.item() > 0
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert abs(mi.item() - mi_t.item()) <= tol * abs(mi_t.item()) + 2e-6


@needs_ext
@pytest.mark.parametrize("marginal", MARGINALS)
def test_gradcheck_float64(marginal):
    t = _templates(7, 20, tau=0.5)
    x = _maps(6, 7, seed=5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: ops.fused_mutual_information(v, t, marginal), (x,),
                                    eps=1e-6, atol=1e-9, rtol=1e-6)


@needs_ext
def test_double_backward_fails_loudly_instead_of_returning_zeros():
    t = _templates(7, 20, tau=0.5)
    x = _maps(5, 7, seed=1).requires_grad_(True)
    (g,) = torch.autograd.grad(ops.fused_mutual_information(x, t), x, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), x)


@needs_ext
@pytest.mark.parametrize("marginal", MARGINALS)
@pytest.mark.parametrize("with_grad", [True, False])
def test_opcheck(marginal, with_grad):
    t = _templates(7, 30, tau=0.5)
    x = _maps(5, 7, seed=2).requires_grad_(True)
    torch.library.opcheck(torch.ops.zoo.mi_forward.default, (x, t, marginal == "batch", with_grad))
    mi, stats, log_q, _ = torch.ops.zoo.mi_forward(x.detach(), t, marginal == "batch", False)
    torch.library.opcheck(torch.ops.zoo.mi_backward.default,
                          (torch.tensor(0.7, dtype=torch.float64), x.detach(), t, stats, log_q))


@needs_ext
@pytest.mark.parametrize("marginal", MARGINALS)
def test_backward_op_equals_gradient_computed_in_forward(marginal):
    # Two gradient paths: the forward's fused gradient (with_grad) and the recomputing backward
    # op; and the recompute path of autograd when the forward was called without with_grad.
    t = _templates(14, 400, tau=0.3)
    x = _maps(40, 14, seed=9)
    b = marginal == "batch"
    mi, stats, log_q, grad = torch.ops.zoo.mi_forward(x, t, b, True)
    gb = torch.ops.zoo.mi_backward(torch.tensor(2.0, dtype=torch.float64), x, t, stats, log_q)
    torch.testing.assert_close(gb, 2.0 * grad, rtol=1e-12, atol=1e-18)
    xr = x.clone().requires_grad_(True)
    torch.ops.zoo.mi_forward(xr, t, b, False)[0].backward()
    _, g_ref = _value_and_grad(mutual_information_reference, x, t, marginal)
    torch.testing.assert_close(xr.grad, g_ref, rtol=1e-10, atol=1e-16)
    assert stats.shape == (40, 3) and log_q.shape == (400,)
    # The statistics mean what the schema says.
    logits = x @ t.t()
    torch.testing.assert_close(stats[:, 0] + stats[:, 1], torch.logsumexp(logits, 1),
                               rtol=1e-12, atol=0)
    if b:
        lp = torch.log_softmax(logits, 1)
        torch.testing.assert_close(log_q, torch.logsumexp(lp, 0) - math.log(40),
                                   rtol=1e-12, atol=1e-12)
    else:
        assert torch.allclose(log_q, torch.full_like(log_q, -math.log(400)))
    assert abs(stats[:, 2].mean().item() - mi.item()) < 1e-14


@needs_ext
@pytest.mark.parametrize("env", [{"ZOO_MI_BUFFER_BYTES": "8192"}, {"ZOO_SIMD": "scalar"},
                                 {"ZOO_SIMD": "avx2"},
                                 {"ZOO_SIMD": "scalar", "ZOO_MI_BUFFER_BYTES": "20000"}])
def test_tiled_path_and_every_simd_variant(env):
    # With the default buffers every M of the paper fits one tile; a tiny buffer (read once per
    # process, hence the subprocess) forces tiles of 64-128 templates, the online (running max)
    # log-sum-exp across them and the recomputing phases for the column statistics and dx.
    # ZOO_SIMD caps the row-kernel variant, so the portable and AVX2 code run here too.
    import subprocess
    import sys
    code = '''
import torch
from zoo import ops, templates
from zoo.ecloss import mutual_information_reference as ref
assert ops.extension_available()
for dtype in (torch.float64, torch.float32):
    t = templates.get_templates(14, 700, 4.0, 0.3, dtype=torch.float64).reshape(700, -1)
    x = torch.rand(37, 196, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    for marginal in ("uniform", "batch"):
        a = x.to(dtype).clone().requires_grad_(True)
        v = ops.fused_mutual_information(a, t.to(dtype), marginal); v.backward()
        b = x.to(dtype).double().clone().requires_grad_(True)
        w = ref(b, t.to(dtype).double(), marginal); w.backward()
        rt = 1e-10 if dtype == torch.float64 else 1e-5
        assert abs(v.item() - w.item()) <= rt * abs(w.item()), (v.item(), w.item())
        err = (a.grad.double() - b.grad).abs().max().item()
        assert err <= rt * 10 * b.grad.abs().max().item(), (err, b.grad.abs().max().item())
        s, lq = torch.ops.zoo.mi_forward(x.to(dtype), t.to(dtype), marginal == "batch", False)[1:3]
        g = torch.ops.zoo.mi_backward(torch.tensor(1.0, dtype=dtype), x.to(dtype), t.to(dtype),
                                      s, lq)
        assert (g.double() - b.grad).abs().max().item() <= rt * 10 * b.grad.abs().max().item()
'''
    allowed = {"scalar": ("scalar",), "avx2": ("avx2", "scalar")}.get(env.get("ZOO_SIMD"),
                                                                      ("avx512", "avx2", "scalar"))
    code += (f"assert torch.ops.zoo_diag.cpu_variant() in {allowed!r}, "
             f"torch.ops.zoo_diag.cpu_variant()\n")
    env = dict(os.environ, **env)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


@needs_ext
def test_non_contiguous_and_4d_inputs_give_the_same_result():
    t = _templates(14, 400, tau=0.3)
    x = _maps(64, 14, seed=4)
    base, g_base = _value_and_grad(ops.fused_mutual_information, x, t, "uniform")
    wide = torch.zeros(64, 2 * 196, dtype=torch.float64)
    wide[:, ::2] = x
    xs = wide[:, ::2]                                    # strided view
    assert not xs.is_contiguous()
    got, g_got = _value_and_grad(ops.fused_mutual_information, xs, t.t().contiguous().t(),
                                 "uniform")
    assert got.item() == base.item()
    torch.testing.assert_close(g_got, g_base, rtol=0, atol=0)
    x4 = x.reshape(4, 16, 14, 14)
    assert ops.fused_mutual_information(x4, t.reshape(-1, 14, 14)).item() == base.item()
    xt = x.t().contiguous().t()                          # column-major
    assert ops.fused_mutual_information(xt, t).item() == base.item()


@needs_ext
def test_bad_inputs_raise_clear_errors():
    t = _templates(7, 10)
    x = _maps(4, 7, seed=0)
    with pytest.raises(ValueError, match="positions"):
        ops.fused_mutual_information(torch.zeros(2, 3, 8, 8, dtype=torch.float64), t)
    with pytest.raises(ValueError, match=r"\(N, 49\)"):
        ops.fused_mutual_information(torch.zeros(4, 50, dtype=torch.float64), t)
    with pytest.raises(ValueError, match="empty batch"):
        ops.fused_mutual_information(torch.zeros(0, 49, dtype=torch.float64), t)
    with pytest.raises(TypeError, match="dtype mismatch"):
        ops.fused_mutual_information(x.float(), t)
    with pytest.raises(TypeError, match="float32 and float64"):
        ops.fused_mutual_information(x.half(), t.half())
    with pytest.raises(ValueError, match="marginal"):
        ops.fused_mutual_information(x, t, "prior")
    with pytest.raises(ValueError, match="device mismatch"):
        ops.fused_mutual_information(x.to("meta"), t)
    with pytest.raises(NotImplementedError, match="templates"):
        ops.fused_mutual_information(x, t.clone().requires_grad_(True))
    # The C++ op checks too, for callers that bypass the Python wrapper.
    with pytest.raises(RuntimeError, match="positions"):
        torch.ops.zoo.mi_forward(x, torch.zeros(3, 48, dtype=torch.float64), False, False)
    with pytest.raises(RuntimeError, match="empty batch"):
        torch.ops.zoo.mi_forward(x[:0], t, False, False)
    with pytest.raises(RuntimeError, match="dtype mismatch"):
        torch.ops.zoo.mi_forward(x.float(), t, False, False)
    with pytest.raises(RuntimeError, match="float32 and float64"):
        torch.ops.zoo.mi_forward(x.to(torch.bfloat16), t.to(torch.bfloat16), False, False)


# ---------------------------------------------------------------- GPU (skip without CUDA)

@needs_ext
@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("marginal", MARGINALS)
@pytest.mark.parametrize("n,m,n_maps", [(7, 1, 3), (7, 2, 1), (14, 400, 1000), (28, 400, 3),
                                        (14, 19307, 5), (14, 400, 17)])
def test_gpu_parity(n, m, n_maps, marginal):
    t = _templates(14, "full", tau=0.3) if m == 19307 else _templates(n, m, tau=0.3)
    x = _maps(n_maps, n, seed=n + m + n_maps)
    _check_f64(x, t, marginal, device="cuda")
    _check_f32(x, t, marginal, device="cuda")


@needs_ext
@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("marginal", MARGINALS)
def test_gpu_gradcheck_and_backward_op(marginal):
    t = _templates(7, 20, tau=0.5).cuda()
    x = _maps(6, 7, seed=5).cuda().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: ops.fused_mutual_information(v, t, marginal), (x,),
                                    eps=1e-6, atol=1e-9, rtol=1e-6)
    b = marginal == "batch"
    mi, stats, log_q, grad = torch.ops.zoo.mi_forward(x.detach(), t, b, True)
    gb = torch.ops.zoo.mi_backward(torch.tensor(3.0, dtype=torch.float64, device="cuda"),
                                   x.detach(), t, stats, log_q)
    torch.testing.assert_close(gb, 3.0 * grad, rtol=1e-12, atol=1e-18)
    torch.library.opcheck(torch.ops.zoo.mi_forward.default, (x, t, b, True))


@needs_ext
@needs_gpu
@pytest.mark.cuda
def test_gpu_no_overflow_and_large_k():
    # n = 32: K = 1024 > the 512 dx columns of one gradient block (two K chunks).
    for n, tau, scale in ((14, 10.0, 200.0), (32, 0.3, 2.0)):
        t = _templates(n, 64, tau=tau)
        x = _maps(40, n, seed=n, scale=scale)
        for marginal in MARGINALS:
            _check_f64(x, t, marginal, device="cuda")
