// Torch glue of the CUDA kernels (mi_kernels.cu): checks, allocation, current stream, dispatch.
// Compiled only when setup.py builds with nvcc (ZOO_WITH_CUDA).
#include "../mi_checks.h"
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>

#include "mi_cuda.h"

namespace zoo {
namespace {

void check_inputs(const at::Tensor& x, const at::Tensor& t, const char* op) {
  check_mi_inputs(x, t, op);
  TORCH_CHECK(x.is_cuda(), op, ": CUDA kernel called with tensors on ", x.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mi_forward_cuda(
    const at::Tensor& x_in, const at::Tensor& t_in, bool batch_marginal, bool with_grad) {
  check_inputs(x_in, t_in, "zoo::mi_forward");
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor x = x_in.contiguous(), tm = t_in.contiguous();
  const int64_t N = x.size(0), M = tm.size(0), K = x.size(1);
  at::Tensor stats = at::empty({N, 3}, x.options());
  at::Tensor lq;
  at::Tensor grad = with_grad ? at::empty({N, K}, x.options()) : at::empty({0, K}, x.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "zoo_mi_forward_cuda", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* tp = tm.data_ptr<T>();
    if (batch_marginal) {
      lq = at::empty({M}, x.options());
      // Pass 1 row log-sum-exp, pass 2 column log-sum-exp of log p, pass 3 row MI with log q.
      C10_CUDA_CHECK(cuda::launch_row_stats<T>(xp, tp, N, M, K, nullptr, stats.data_ptr<T>(),
                                               stream));
      C10_CUDA_CHECK(cuda::launch_col_stats<T>(xp, tp, N, M, K, stats.data_ptr<T>(),
                                               lq.data_ptr<T>(), stream));
    } else {
      lq = at::full({M}, -std::log(double(M)), x.options());
    }
    C10_CUDA_CHECK(cuda::launch_row_stats<T>(xp, tp, N, M, K, lq.data_ptr<T>(),
                                             stats.data_ptr<T>(), stream));
    if (with_grad) {
      C10_CUDA_CHECK(cuda::launch_grad<T>(xp, tp, N, M, K, stats.data_ptr<T>(), lq.data_ptr<T>(),
                                          nullptr, T(1) / T(N), grad.data_ptr<T>(), stream));
    }
  });
  at::Tensor mi = stats.select(1, 2).mean();
  return {mi, stats, lq, grad};
}

at::Tensor mi_backward_cuda(const at::Tensor& g, const at::Tensor& x_in, const at::Tensor& t_in,
                            const at::Tensor& stats_in, const at::Tensor& lq_in) {
  check_inputs(x_in, t_in, "zoo::mi_backward");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t N = x_in.size(0), M = t_in.size(0), K = x_in.size(1);
  TORCH_CHECK(g.numel() == 1, "zoo::mi_backward: grad_mi must be a scalar");
  TORCH_CHECK(stats_in.dim() == 2 && stats_in.size(0) == N && stats_in.size(1) == 3 &&
                  lq_in.numel() == M,
              "zoo::mi_backward: statistics do not match the shapes of maps and templates");
  at::Tensor x = x_in.contiguous(), tm = t_in.contiguous();
  auto opts = x.options();
  at::Tensor gg = g.to(opts).reshape({1}).contiguous();  // stays on the device: no host sync
  at::Tensor stats = stats_in.to(opts).contiguous();
  at::Tensor lq = lq_in.to(opts).contiguous();
  at::Tensor dx = at::empty({N, K}, opts);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "zoo_mi_backward_cuda", [&] {
    using T = scalar_t;
    C10_CUDA_CHECK(cuda::launch_grad<T>(x.data_ptr<T>(), tm.data_ptr<T>(), N, M, K,
                                        stats.data_ptr<T>(), lq.data_ptr<T>(), gg.data_ptr<T>(),
                                        T(1) / T(N), dx.data_ptr<T>(), stream));
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(zoo, CUDA, m) {
  m.impl("mi_forward", &mi_forward_cuda);
  m.impl("mi_backward", &mi_backward_cuda);
}

}  // namespace zoo
