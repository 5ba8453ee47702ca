"""GPU benchmark of the fused MI op: `pytest --benchmark tests/benchmarks/test_bench_ops_cuda.py`.

Skips without a CUDA device. Same problem as test_bench_ops.py (float32, forward + backward,
N = 8192 maps, n = 14, M = 400 and the full 19,307), on the GPU: the CUDA kernel of csrc/ against
the eager reference (cuBLAS + log_softmax) and the 2-GEMM floor, interleaved round by round,
CUDA-synchronised, with the peak extra CUDA memory of each (torch.cuda.max_memory_allocated
counts the op's workspace too: it allocates through torch). Ratios only, in extra_info and stdout;
this is the measurement that decides whether impl="auto" should use the kernel on CUDA tensors
(zoo.ecloss.mutual_information).
"""
import statistics
import time

import pytest
import torch

from zoo import ops, templates
from zoo.ecloss import mutual_information_reference

pytestmark = [pytest.mark.benchmark_suite,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.skipif(not (ops.extension_available() and ops.has_cuda()),
                                 reason="zoo._C not built with CUDA kernels")]

N_MAPS, N = 16 * 512, 14


def _timed(fn, rounds=20):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(rounds):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / rounds


def _peak_extra_mb(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


@pytest.mark.parametrize("m", [400, 19307])
def test_bench_fused_mi_cuda(benchmark, m):
    t = templates.get_templates(N, "full" if m == 19307 else m, 4.0, 1.0, device="cuda",
                        dtype=torch.float32).reshape(-1, N * N).contiguous()
    x0 = torch.relu(torch.randn(N_MAPS, N * N, device="cuda", generator=torch.Generator(
        "cuda").manual_seed(0)))
    g = torch.rand(N_MAPS, t.shape[0], device="cuda")

    def fwd_bwd(fn):
        def run():
            x = x0.detach().requires_grad_(True)
            fn(x, t).backward()
        return run

    runs = {"fused": fwd_bwd(ops.fused_mutual_information),
            "eager": fwd_bwd(mutual_information_reference),
            "floor": lambda: (x0 @ t.t(), g @ t)}
    for f in runs.values():
        f()
    times = {k: [] for k in runs}
    for r in range(5):
        for k in list(runs)[r % 3:] + list(runs)[:r % 3]:
            times[k].append(_timed(runs[k]))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    mem = {k: _peak_extra_mb(runs[k]) for k in ("fused", "eager")}
    info = {"device": torch.cuda.get_device_name(), "ms": med, "extra_mb": mem,
            "fused_vs_eager_speedup": med["eager"] / med["fused"],
            "fused_vs_floor": med["fused"] / med["floor"]}
    benchmark.extra_info.update(info)
    print(f"\nCUDA M={m}: {info}")
    benchmark.group = f"fused MI on CUDA, M={m}"
    benchmark.pedantic(runs["fused"], rounds=10, iterations=1, warmup_rounds=1)
