// Row kernels of the fused MI op on the CPU: the elementwise/reduction work on one row of a
// cache-resident block of logits. Free of torch headers so that the AVX2 variant can be compiled
// with a target pragma without recompiling any ATen inline function for AVX2 (ODR safety).
#pragma once
#include <cstdint>

namespace zoo {
namespace simd {

// For one row of logits L[0..n) of a template tile (lq: log marginal of those templates, or
// nullptr for 0):  m = max_j L_j,  s = sum_j exp(L_j - m),  t = sum_j exp(L_j - m) (L_j - m - lq_j).
// With lse = m + log s:  sum_j p_j (log p_j - lq_j) = t / s - log s  (no cancellation of large L).
// s and t are accumulated in double also for float32 input: sums over 10^4 templates (and
// over 10^4 maps for the column sums below) would otherwise lose ~1e-6 relative.
void row_tile_stats(const float* L, const float* lq, int64_t n, float* m, double* s, double* t);
void row_tile_stats(const double* L, const double* lq, int64_t n, double* m, double* s, double* t);

// In place: L_j <- c * p_j * (log p_j - lq_j - A) with log p_j = (L_j - m) - ls: the logit
// gradient. log p is formed from the row max m and ls = log s separately, never via a rounded
// lse = m + ls: at logits ~100 a float32 lse is off by up to 4e-6, which would shift every p.
void row_grad(float* L, const float* lq, int64_t n, float m, float ls, float A, float c);
void row_grad(double* L, const double* lq, int64_t n, double m, double ls, double A, double c);

// Column (template) log-sum-exp of log p over the rows of a block, merged into a running
// (cm, cs) pair per template: cm = running max of log p, cs = sum exp(log p - cm).
// col_max:     nm_j = max(nm_j, log p_j) for one row, log p_j = (L_j - m) - ls.
// col_rescale: cs_j *= exp(cm_j - nm_j), cm_j = nm_j   (once per block).
// col_accum:   cs_j += exp(log p_j - cm_j) for one row.
void col_max(const float* L, int64_t n, float m, float ls, float* nm);
void col_max(const double* L, int64_t n, double m, double ls, double* nm);
void col_rescale(float* cm, double* cs, const float* nm, int64_t n);
void col_rescale(double* cm, double* cs, const double* nm, int64_t n);
void col_accum(const float* L, int64_t n, float m, float ls, const float* cm, double* cs);
void col_accum(const double* L, int64_t n, double m, double ls, const double* cm, double* cs);

// Which variant the dispatcher picked ("avx512", "avx2" or "scalar"), for tests and benchmarks.
const char* variant();

}  // namespace simd
}  // namespace zoo
