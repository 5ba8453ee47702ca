// Launchers of the CUDA kernels of the fused MI op (mi_kernels.cu). Free of torch headers: raw
// device pointers, sizes and the stream to launch on; they return the launch's cudaError_t.
// All pointers are device pointers to contiguous row-major arrays:
//   x (N, K) maps, t (M, K) templates, stats (N, 3), lq (M).
// stats row i: m_i = max_j L_ij, ls_i = log sum_j exp(L_ij - m_i), A_i = row MI (see below);
// log p_ij is always formed as (L_ij - m_i) - ls_i (a rounded lse = m + ls loses precision).
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace zoo {
namespace cuda {

// Per map: m_i, ls_i and A_i = sum_j p_ij (log p_ij - lq_j), L = x t^T, by an online (running
// max) log-sum-exp over tiles of templates. lq may be nullptr (taken as 0).
template <typename T>
cudaError_t launch_row_stats(const T* x, const T* t, int64_t N, int64_t M, int64_t K, const T* lq,
                             T* stats, cudaStream_t stream);

// Per template: lq_j = log mean_i p_ij = logsumexp_i log p_ij - log N (batch marginal).
template <typename T>
cudaError_t launch_col_stats(const T* x, const T* t, int64_t N, int64_t M, int64_t K,
                             const T* stats, T* lq, cudaStream_t stream);

// dx = G t with G_ij = scale * p_ij (log p_ij - lq_j - A_i), scale = inv_n * (*gscale) (gscale
// may be nullptr: 1); the logits are recomputed tile by tile, never stored.
template <typename T>
cudaError_t launch_grad(const T* x, const T* t, int64_t N, int64_t M, int64_t K, const T* stats,
                        const T* lq, const T* gscale, T inv_n, T* dx, cudaStream_t stream);

}  // namespace cuda
}  // namespace zoo
