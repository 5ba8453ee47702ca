// CUDA kernels of the fused MI op (see docs/kernels.md). No torch headers here (fast nvcc
// builds); the torch glue is mi_cuda.cpp (distinct stem: one object per source).
//
// Every kernel works on 16 x 16 tiles: 16 maps x 16 templates, one logit per thread, computed
// by a shared-memory tiled product over the K positions (chunks of 16). A block walks over all
// tiles of templates (row kernels) or of maps (column kernel) and keeps running statistics in
// registers, so no N x M matrix ever exists; the gradient kernel recomputes the logits
// (flash-attention style) and accumulates G t in registers. Reductions across the 16 threads
// of a row/column are done in a fixed order: results are deterministic.
#include "mi_cuda.h"

#include <math_constants.h>

namespace zoo {
namespace cuda {
namespace {

constexpr int TILE = 16;
constexpr int KCHUNK = 512;              // dx columns per block in the gradient kernel
constexpr int KACC = KCHUNK / TILE;      // accumulators per thread

template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return -CUDART_INF_F; }
template <> __device__ __forceinline__ double neg_inf<double>() { return -CUDART_INF; }

__device__ __forceinline__ float dexp(float v) { return expf(v); }
__device__ __forceinline__ double dexp(double v) { return exp(v); }
__device__ __forceinline__ float dlog(float v) { return logf(v); }
__device__ __forceinline__ double dlog(double v) { return log(v); }

// Logit L = <x[r0 + ty], t[j0 + tx]> for this thread (0 outside the matrix). All threads of
// the block must call it (it synchronises).
template <typename T>
__device__ T tile_logit(const T* __restrict__ x, const T* __restrict__ t, int64_t N, int64_t M,
                        int64_t K, int64_t r0, int64_t j0, T (*xs)[TILE + 1],
                        T (*ts)[TILE + 1]) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  T acc = T(0);
  for (int64_t k0 = 0; k0 < K; k0 += TILE) {
    const int64_t k = k0 + tx;
    xs[ty][tx] = (r0 + ty < N && k < K) ? x[(r0 + ty) * K + k] : T(0);
    ts[ty][tx] = (j0 + ty < M && k < K) ? t[(j0 + ty) * K + k] : T(0);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < TILE; ++kk) acc += xs[ty][kk] * ts[tx][kk];
    __syncthreads();
  }
  return acc;
}

// Online log-sum-exp state: m running max, s = sum exp(v - m), w = sum exp(v - m) (v - m - c).
template <typename T>
__device__ __forceinline__ void online_add(T& m, T& s, T& w, T v, T c) {
  if (v > m) {
    if (m == neg_inf<T>()) {
      s = T(0);
      w = T(0);
    } else {
      const T sc = dexp(m - v);
      w = sc * (w + s * (m - v));
      s = sc * s;
    }
    m = v;
  }
  const T d = v - m;
  const T e = dexp(d);
  s += e;
  w += e * (d - c);
}

template <typename T>
__device__ __forceinline__ void online_merge(T& m, T& s, T& w, T m2, T s2, T w2) {
  if (m2 == neg_inf<T>()) return;
  if (m == neg_inf<T>()) {
    m = m2; s = s2; w = w2;
    return;
  }
  const T nm = m > m2 ? m : m2;
  const T a = dexp(m - nm), b = dexp(m2 - nm);
  w = a * (w + s * (m - nm)) + b * (w2 + s2 * (m2 - nm));
  s = a * s + b * s2;
  m = nm;
}

template <typename T>
__global__ void row_stats_kernel(const T* __restrict__ x, const T* __restrict__ t, int64_t N,
                                 int64_t M, int64_t K, const T* __restrict__ lq,
                                 T* __restrict__ stats) {
  __shared__ T xs[TILE][TILE + 1], ts[TILE][TILE + 1];
  __shared__ T sm[TILE][TILE], ss[TILE][TILE], sw[TILE][TILE];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t r0 = int64_t(blockIdx.x) * TILE;
  const int64_t r = r0 + ty;
  T m = neg_inf<T>(), s = T(0), w = T(0);
  for (int64_t j0 = 0; j0 < M; j0 += TILE) {
    const T L = tile_logit(x, t, N, M, K, r0, j0, xs, ts);
    const int64_t j = j0 + tx;
    if (r < N && j < M) online_add(m, s, w, L, lq ? lq[j] : T(0));
  }
  sm[ty][tx] = m; ss[ty][tx] = s; sw[ty][tx] = w;
  __syncthreads();
  if (tx == 0 && r < N) {
    for (int q = 1; q < TILE; ++q) online_merge(m, s, w, sm[ty][q], ss[ty][q], sw[ty][q]);
    const T ls = dlog(s);
    stats[r * 3 + 0] = m;
    stats[r * 3 + 1] = ls;
    stats[r * 3 + 2] = w / s - ls;
  }
}

template <typename T>
__global__ void col_stats_kernel(const T* __restrict__ x, const T* __restrict__ t, int64_t N,
                                 int64_t M, int64_t K, const T* __restrict__ stats,
                                 T* __restrict__ lq) {
  __shared__ T xs[TILE][TILE + 1], ts[TILE][TILE + 1];
  __shared__ T sm[TILE][TILE], ss[TILE][TILE];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t j0 = int64_t(blockIdx.x) * TILE;
  const int64_t j = j0 + tx;
  T m = neg_inf<T>(), s = T(0), w = T(0);  // w unused (c = 0), kept to share online_add
  for (int64_t r0 = 0; r0 < N; r0 += TILE) {
    const T L = tile_logit(x, t, N, M, K, r0, j0, xs, ts);
    const int64_t r = r0 + ty;
    if (r < N && j < M) online_add(m, s, w, (L - stats[r * 3]) - stats[r * 3 + 1], T(0));
  }
  sm[ty][tx] = m; ss[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && j < M) {
    for (int q = 1; q < TILE; ++q) {
      T w2 = T(0);
      online_merge(m, s, w, sm[q][tx], ss[q][tx], w2);
    }
    lq[j] = m + dlog(s) - dlog(T(N));
  }
}

template <typename T>
__global__ void grad_kernel(const T* __restrict__ x, const T* __restrict__ t, int64_t N,
                            int64_t M, int64_t K, const T* __restrict__ stats,
                            const T* __restrict__ lq,
                            const T* __restrict__ gscale, T inv_n, T* __restrict__ dx) {
  __shared__ T xs[TILE][TILE + 1], ts[TILE][TILE + 1];
  __shared__ T gs[TILE][TILE + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t r0 = int64_t(blockIdx.x) * TILE;
  const int64_t r = r0 + ty;
  const int64_t k0 = int64_t(blockIdx.y) * KCHUNK;
  const T scale = inv_n * (gscale ? *gscale : T(1));
  const T m_r = r < N ? stats[r * 3] : T(0);
  const T ls_r = r < N ? stats[r * 3 + 1] : T(0);
  const T A_r = r < N ? stats[r * 3 + 2] : T(0);
  T acc[KACC];
#pragma unroll
  for (int q = 0; q < KACC; ++q) acc[q] = T(0);
  for (int64_t j0 = 0; j0 < M; j0 += TILE) {
    const T L = tile_logit(x, t, N, M, K, r0, j0, xs, ts);
    const int64_t j = j0 + tx;
    T g = T(0);
    if (r < N && j < M) {
      const T lp = (L - m_r) - ls_r;  // log p_ij
      g = scale * dexp(lp) * (lp - lq[j] - A_r);
    }
    gs[ty][tx] = g;
    __syncthreads();
    const int64_t jn = (M - j0) < TILE ? (M - j0) : TILE;
#pragma unroll
    for (int q = 0; q < KACC; ++q) {
      const int64_t k = k0 + tx + int64_t(q) * TILE;
      if (k < K) {
        T a = acc[q];
        for (int64_t jj = 0; jj < jn; ++jj) a += gs[ty][jj] * t[(j0 + jj) * K + k];
        acc[q] = a;
      }
    }
    __syncthreads();  // gs is rewritten by the next tile
  }
  if (r < N) {
#pragma unroll
    for (int q = 0; q < KACC; ++q) {
      const int64_t k = k0 + tx + int64_t(q) * TILE;
      if (k < K) dx[r * K + k] = acc[q];
    }
  }
}

}  // namespace

template <typename T>
cudaError_t launch_row_stats(const T* x, const T* t, int64_t N, int64_t M, int64_t K, const T* lq,
                             T* stats, cudaStream_t stream) {
  const dim3 block(TILE, TILE), grid(unsigned((N + TILE - 1) / TILE));
  row_stats_kernel<T><<<grid, block, 0, stream>>>(x, t, N, M, K, lq, stats);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_col_stats(const T* x, const T* t, int64_t N, int64_t M, int64_t K,
                             const T* stats, T* lq, cudaStream_t stream) {
  const dim3 block(TILE, TILE), grid(unsigned((M + TILE - 1) / TILE));
  col_stats_kernel<T><<<grid, block, 0, stream>>>(x, t, N, M, K, stats, lq);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_grad(const T* x, const T* t, int64_t N, int64_t M, int64_t K, const T* stats,
                        const T* lq, const T* gscale, T inv_n, T* dx, cudaStream_t stream) {
  const dim3 block(TILE, TILE);
  const dim3 grid(unsigned((N + TILE - 1) / TILE), unsigned((K + KCHUNK - 1) / KCHUNK));
  grad_kernel<T><<<grid, block, 0, stream>>>(x, t, N, M, K, stats, lq, gscale, inv_n, dx);
  return cudaGetLastError();
}

#define ZOO_INSTANTIATE(T)                                                                      \
  template cudaError_t launch_row_stats<T>(const T*, const T*, int64_t, int64_t, int64_t,       \
                                           const T*, T*, cudaStream_t);                         \
  template cudaError_t launch_col_stats<T>(const T*, const T*, int64_t, int64_t, int64_t,       \
                                           const T*, T*, cudaStream_t);                         \
  template cudaError_t launch_grad<T>(const T*, const T*, int64_t, int64_t, int64_t, const T*,  \
                                      const T*, const T*, T, T*, cudaStream_t);

ZOO_INSTANTIATE(float)
ZOO_INSTANTIATE(double)

}  // namespace cuda
}  // namespace zoo
