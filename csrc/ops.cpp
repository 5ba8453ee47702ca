// Schemas of the zoo ops (pytorch/extension-cpp style). Kernels: mi_cpu.cpp (CPU) and
// cuda/mi_cuda.cpp (CUDA, only when built with ZOO_WITH_CUDA). Autograd and fake (meta) kernels
// are registered from Python in zoo/ops.py with torch.library.register_autograd/register_fake.
#include <Python.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <set>
#include <mutex>

#include "mi_simd.h"

// Importing zoo._C runs the static TORCH_LIBRARY initialisers (the zoo and zoo_diag op
// namespaces); the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&def);
}

namespace zoo {

bool has_cuda() {
#ifdef ZOO_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cpu_variant() { return simd::variant(); }

// How many distinct threads at::parallel_for used for `items` work items of grain 1. Without
// -fopenmp on compile and link it silently runs on one thread; tests check this is > 1.
int64_t parallel_threads_used(int64_t items) {
  std::mutex mu;
  std::set<int> ids;
  at::parallel_for(0, items, 1, [&](int64_t b, int64_t e) {
    volatile double sink = 0;  // a little work so that one thread cannot take every chunk
    for (int64_t i = b; i < e; ++i)
      for (int k = 0; k < 200000; ++k) sink = sink + 1e-9 * k;
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(at::get_thread_num());
  });
  return int64_t(ids.size());
}

TORCH_LIBRARY(zoo, m) {
  // Fused MI of paper Eq. 5-6 over maps x (N, K) and templates (M, K).
  // Returns (mi, stats, log_q, grad), L = x T^T, p = softmax_j L:
  //   mi      0-dim  MI = mean_i row_mi_i
  //   stats   (N, 3) per map: m_i = max_j L_ij, ls_i = log sum_j exp(L_ij - m_i) (so the
  //                  log-sum-exp is m_i + ls_i; kept apart for precision), row_mi_i =
  //                  sum_j p_ij (log p_ij - log_q_j)
  //   log_q   (M)    log marginal: -log M (uniform) or log mean_i p_ij (batch)
  //   grad    (N, K) dMI/dx when with_grad, else (0, K): computed while the logits are in cache.
  m.def("mi_forward(Tensor x, Tensor templates, bool batch_marginal, bool with_grad) -> "
        "(Tensor, Tensor, Tensor, Tensor)");
  // grad_mi * dMI/dx from the forward statistics, recomputing the logits block by block.
  m.def("mi_backward(Tensor grad_mi, Tensor x, Tensor templates, Tensor stats, Tensor log_q) "
        "-> Tensor");
  m.def("has_cuda() -> bool", &has_cuda);
}

// Diagnostics for tests and benchmarks, kept out of the public zoo:: op namespace:
// torch.ops.zoo_diag.cpu_variant() names the SIMD variant the CPU row kernel runs,
// torch.ops.zoo_diag.parallel_threads_used(items) checks the OpenMP build (see above).
TORCH_LIBRARY(zoo_diag, m) {
  m.def("cpu_variant() -> str", &cpu_variant);
  m.def("parallel_threads_used(int items) -> int", &parallel_threads_used);
}

}  // namespace zoo
