"""The fused MI op as built and used (csrc/, zoo.ops): the diagnostic namespace, zoo.ecloss's
dispatch to it, its threads, torch.compile, the fallback without the extension, the CUDA build
and the CUDA kernels emulated on the CPU. Parity with the reference and the tolerances:
tests/test_ops.py."""
import math
import os
import shutil

import pytest
import torch
from mi_cases import maps as _maps, template_rows as _templates, value_and_grad as _value_and_grad

from zoo import ops
from zoo.ecloss import ECLoss, mutual_information, mutual_information_reference

needs_ext = pytest.mark.skipif(not ops.extension_available(),
                               reason=f"zoo._C not built: {ops.extension_error()}")

MARGINALS = ["uniform", "batch"]


@needs_ext
def test_diagnostic_ops_live_outside_the_public_namespace():
    # cpu_variant and parallel_threads_used are for tests and benchmarks: torch.ops.zoo_diag.
    assert torch.ops.zoo_diag.cpu_variant() in ("avx512", "avx2", "scalar")
    assert torch.ops.zoo_diag.parallel_threads_used(1) == 1
    for name in ("cpu_variant", "parallel_threads_used"):
        assert not hasattr(torch.ops.zoo, name), name
    assert hasattr(torch.ops.zoo, "mi_forward") and hasattr(torch.ops.zoo, "has_cuda")


@needs_ext
def test_ecloss_dispatches_to_the_extension():
    t = _templates(14, 400, tau=0.3)
    x = _maps(8, 14, seed=1).reshape(2, 4, 14, 14)
    for marginal in MARGINALS:
        ext = mutual_information(x, t, marginal, impl="extension")
        ref = mutual_information(x, t, marginal, impl="reference")
        assert abs(ext.item() - ref.item()) <= 1e-10 * abs(ref.item())
    loss = ECLoss(14, 400, tau=0.3, impl="extension")
    assert torch.isfinite(loss(x.float()))


@needs_ext
def test_parallel_for_uses_several_threads_and_results_do_not_depend_on_them():
    # -fopenmp on compile and link (setup.py): at::parallel_for really runs on > 1 thread.
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.ops.zoo_diag.parallel_threads_used(8) == 2
        t = _templates(14, 400, tau=0.3)
        x = _maps(500, 14, seed=8)
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for marginal in MARGINALS:
                results.append(_value_and_grad(ops.fused_mutual_information, x, t, marginal))
        for (a, ga), (b, gb) in zip(results[:2], results[2:]):
            assert abs(a.item() - b.item()) <= 1e-13 * abs(a.item())
            # Block sizes follow the thread count, so only the GEMM rounding may differ.
            torch.testing.assert_close(ga, gb, rtol=0, atol=1e-12 * 0.3 / 500)
    finally:
        torch.set_num_threads(old)


@needs_ext
def test_torch_compile_traces_the_op():
    t = _templates(7, 30, tau=0.5)
    x = _maps(12, 7, seed=6)

    def f(v):
        return -ops.fused_mutual_information(v, t, "batch") * 2.0

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya, yb = f(xa), compiled(xb)
    ya.backward()
    yb.backward()
    assert abs(ya.item() - yb.item()) < 1e-14
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=0)


def test_zoo_works_without_the_extension(monkeypatch):
    # Simulate an install without zoo._C: ecloss falls back to the reference with one warning.
    import zoo.ecloss as ecloss
    monkeypatch.setattr(ops, "_loaded", False)
    monkeypatch.setattr(ops, "_error", "ImportError: simulated")
    monkeypatch.setattr(ecloss, "_warned_fallback", False)
    t = _templates(7, 10)
    x = _maps(4, 7, seed=0)
    with pytest.warns(RuntimeWarning, match="simulated"):
        v = mutual_information(x, t)
    assert v.item() == mutual_information_reference(x, t).item()
    with pytest.raises(RuntimeError, match="not available"):
        mutual_information(x, t, impl="extension")
    with pytest.raises(RuntimeError, match="not available"):
        ops.fused_mutual_information(x, t)
    assert not ops.has_cuda()


def _nvcc_found():
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    return (shutil.which("nvcc") is not None
            or os.path.exists(os.path.join(cuda_home, "bin", "nvcc")))


@pytest.mark.skipif(os.environ.get("ZOO_NO_CUDA") == "1"
                    or os.environ.get("ZOO_NO_EXTENSION") == "1",
                    reason="CUDA part deliberately not built (ZOO_NO_CUDA / ZOO_NO_EXTENSION)")
@pytest.mark.skipif(torch.version.cuda is None or not _nvcc_found(),
                    reason="CPU-only torch or no nvcc: the CUDA kernels are not built")
def test_extension_was_built_with_cuda_when_nvcc_is_present():
    assert ops.extension_available(), ops.extension_error()
    assert ops.has_cuda(), "zoo._C was built without its CUDA kernels although nvcc is present"
    assert torch.ops.zoo.has_cuda()


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the emulation")
def test_cuda_kernels_emulated_on_cpu(tmp_path):
    # The CUDA kernel source (csrc/cuda/mi_kernels.cu, unchanged but for the <<<>>> launch
    # syntax) run on the CPU with one std::thread per CUDA thread and a barrier for
    # __syncthreads (csrc/cuda/emulation/): checks the tiling, the online log-sum-exp, the
    # partial tiles and the two K chunks at n = 32 where no GPU is available. Not a check of
    # nvcc's code generation: the GPU tests below do that when a device is present.
    import ctypes
    import importlib.util
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "csrc", "cuda", "emulation", "emulate.py")
    spec = importlib.util.spec_from_file_location("zoo_cuda_emulate", here)
    emulate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(emulate)
    lib = ctypes.CDLL(emulate.build(str(tmp_path)))

    def ptr(v):
        return ctypes.c_void_p(v.data_ptr()) if v is not None else None

    for n, m, n_maps in [(7, 1, 3), (7, 37, 19), (32, 21, 18)]:
        t = _templates(n, m, tau=0.5).contiguous()
        x = _maps(n_maps, n, seed=n + m)
        k = n * n
        for marginal in MARGINALS:
            stats = torch.empty(n_maps, 3, dtype=torch.float64)
            lq = torch.full((m,), -math.log(m), dtype=torch.float64)
            if marginal == "batch":
                assert lib.emu_row_stats(ptr(x), ptr(t), n_maps, m, k, None, ptr(stats)) == 0
                assert lib.emu_col_stats(ptr(x), ptr(t), n_maps, m, k, ptr(stats), ptr(lq)) == 0
            assert lib.emu_row_stats(ptr(x), ptr(t), n_maps, m, k, ptr(lq), ptr(stats)) == 0
            dx = torch.empty(n_maps, k, dtype=torch.float64)
            g = torch.tensor([0.5], dtype=torch.float64)
            assert lib.emu_grad(ptr(x), ptr(t), n_maps, m, k, ptr(stats), ptr(lq), ptr(g),
                                ctypes.c_double(1.0 / n_maps), ptr(dx)) == 0
            mi_r, g_r = _value_and_grad(mutual_information_reference, x, t, marginal)
            mi = stats[:, 2].mean().item()
            assert abs(mi - mi_r.item()) <= 1e-10 * abs(mi_r.item()) + 1e-13
            s = t.abs().max().item() / n_maps
            err = (dx - 0.5 * g_r).abs().max().item()
            assert err <= 1e-10 * g_r.abs().max().item() + 1e-12 * s
