"""Build the CUDA kernel source (../mi_kernels.cu) for the CPU with the emulation shim.

The launch syntax `kernel<<<grid, block, 0, stream>>>(args)` is rewritten to
`emu_launch(grid, block, [&] { kernel(args); })`; nothing else in the kernel source changes.
C entry points (double only) are appended for ctypes. Returns the path of the shared library.
"""
import os
import re
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))

ENTRY = r'''
extern "C" {
int emu_row_stats(const double* x, const double* t, long N, long M, long K, const double* lq,
                  double* stats) {
  return zoo::cuda::launch_row_stats<double>(x, t, N, M, K, lq, stats, nullptr);
}
int emu_col_stats(const double* x, const double* t, long N, long M, long K, const double* stats,
                  double* lq) {
  return zoo::cuda::launch_col_stats<double>(x, t, N, M, K, stats, lq, nullptr);
}
int emu_grad(const double* x, const double* t, long N, long M, long K, const double* stats,
             const double* lq, const double* gscale, double inv_n, double* dx) {
  return zoo::cuda::launch_grad<double>(x, t, N, M, K, stats, lq, gscale, inv_n, dx, nullptr);
}
}
'''


def build(out_dir, cxx="g++"):
    src = open(os.path.join(HERE, "..", "mi_kernels.cu")).read()
    src, n = re.subn(r"(\w+<T>)<<<(\w+), (\w+), 0, stream>>>\(([^;]*)\);",
                     r"emu_launch(\2, \3, [&] { \1(\4); });", src)
    assert n == 3, f"expected 3 kernel launches in mi_kernels.cu, rewrote {n}"
    cpp = os.path.join(out_dir, "mi_kernels_emulated.cpp")
    with open(cpp, "w") as f:
        f.write(src + ENTRY)
    lib = os.path.join(out_dir, "libmi_kernels_emulated.so")
    subprocess.run([cxx, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
                    "-I", HERE, "-I", os.path.join(HERE, ".."), cpp, "-o", lib], check=True)
    return lib
