// Input checks shared by the CPU and CUDA entry points of the MI ops.
#pragma once

#include <ATen/ATen.h>

namespace zoo {

inline void check_mi_inputs(const at::Tensor& x, const at::Tensor& t, const char* op) {
  TORCH_CHECK(x.dim() == 2, op, ": maps must be (N, K), got ", x.sizes());
  TORCH_CHECK(t.dim() == 2, op, ": templates must be (M, K), got ", t.sizes());
  TORCH_CHECK(x.size(1) == t.size(1), op, ": maps have ", x.size(1), " positions but templates ",
              t.size(1));
  TORCH_CHECK(x.size(0) > 0, op, ": empty batch (N = 0 maps)");
  TORCH_CHECK(t.size(0) > 0, op, ": no templates (M = 0)");
  TORCH_CHECK(x.scalar_type() == t.scalar_type(), op, ": dtype mismatch: maps ", x.scalar_type(),
              ", templates ", t.scalar_type());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": only float32 and float64 are supported, got ", x.scalar_type());
  TORCH_CHECK(x.device() == t.device(), op, ": device mismatch: maps on ", x.device(),
              ", templates on ", t.device());
}

}  // namespace zoo
