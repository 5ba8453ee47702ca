// Schemas of the zoo ops (pytorch/extension-cpp style). Kernels: mi_cpu.cpp (CPU) and
// cuda/mi_cuda.cpp (CUDA, only when built with ZOO_WITH_CUDA). Autograd and fake (meta) kernels
// are registered from Python in zoo/ops.py with torch.library.register_autograd/register_fake.
#include <Python.h>
#include <torch/library.h>

#include "mi_simd.h"

// Importing zoo._C runs the static TORCH_LIBRARY initialisers; the module itself is empty.
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

TORCH_LIBRARY(zoo, m) {
  // Fused MI of paper Eq. 5-6 over maps x (N, K) and templates (M, K).
  // Returns (mi, lse, row_mi, log_q, grad):
  //   mi      0-dim  MI = mean_i row_mi_i
  //   lse     (N)    log sum_j exp(L_ij), L = x T^T
  //   row_mi  (N)    sum_j p_ij (log p_ij - log_q_j)
  //   log_q   (M)    log marginal: -log M (uniform) or log mean_i p_ij (batch)
  //   grad    (N, K) dMI/dx when with_grad, else (0, K): computed while the logits are in cache.
  m.def("mi_forward(Tensor x, Tensor templates, bool batch_marginal, bool with_grad) -> "
        "(Tensor, Tensor, Tensor, Tensor, Tensor)");
  // dMI/dx * grad_mi from the forward statistics, recomputing the logits block by block.
  m.def("mi_backward(Tensor grad_mi, Tensor x, Tensor templates, Tensor lse, Tensor row_mi, "
        "Tensor log_q) -> Tensor");
  m.def("has_cuda() -> bool", &has_cuda);
  m.def("cpu_variant() -> str", &cpu_variant);
}

}  // namespace zoo
