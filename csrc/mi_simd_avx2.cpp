// AVX2+FMA variant of the row kernels. Only this file is compiled for AVX2 (target pragma after
// the standard headers; no torch header here), and it is only called when the CPU supports it
// (dispatch in mi_simd.cpp). exp comes from SLEEF's 1-ulp vector exp, which libtorch_cpu
// exports (the same routine torch.exp uses on these CPUs).
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

extern "C" {
__m256 Sleef_expf8_u10(__m256);
__m256d Sleef_expd4_u10(__m256d);
}

namespace zoo {
namespace simd {
namespace avx2 {

static inline double hsum_d(__m256d a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

struct VF {
  using T = float;
  using R = __m256;
  static constexpr int W = 8;
  static R loadu(const T* p) { return _mm256_loadu_ps(p); }
  static void storeu(T* p, R v) { _mm256_storeu_ps(p, v); }
  static R set1(T v) { return _mm256_set1_ps(v); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R exp(R a) { return Sleef_expf8_u10(a); }
  static void add_to_double(double* p, R v) {  // p[0..8) += v, in double
    _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), _mm256_cvtps_pd(_mm256_castps256_ps128(v))));
    _mm256_storeu_pd(p + 4, _mm256_add_pd(_mm256_loadu_pd(p + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
  }
  struct Acc {  // 8 float lanes summed into 2 x 4 double lanes
    __m256d lo, hi;
    Acc() : lo(_mm256_setzero_pd()), hi(_mm256_setzero_pd()) {}
    void add(R a) {
      lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
      hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
    }
    double sum() const { return hsum_d(_mm256_add_pd(lo, hi)); }
  };
  static T hmax(R a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
};

struct VD {
  using T = double;
  using R = __m256d;
  static constexpr int W = 4;
  static R loadu(const T* p) { return _mm256_loadu_pd(p); }
  static void storeu(T* p, R v) { _mm256_storeu_pd(p, v); }
  static R set1(T v) { return _mm256_set1_pd(v); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
  static R sub(R a, R b) { return _mm256_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static R max(R a, R b) { return _mm256_max_pd(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R exp(R a) { return Sleef_expd4_u10(a); }
  static void add_to_double(double* p, R v) { _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), v)); }
  struct Acc {
    __m256d v;
    Acc() : v(_mm256_setzero_pd()) {}
    void add(R a) { v = _mm256_add_pd(v, a); }
    double sum() const { return hsum_d(v); }
  };
  static T hmax(R a) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    s = _mm_max_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
};

#include "mi_simd_impl.h"

#define ZOO_DEFINE(T, V)                                                                      \
  void row_tile_stats(const T* L, const T* lq, int64_t n, T* m, double* s, double* t) {       \
    Impl<V>::tile_stats(L, lq, n, m, s, t);                                                   \
  }                                                                                           \
  void row_grad(T* L, const T* lq, int64_t n, T m, T ls, T A, T c) {                              \
    Impl<V>::grad(L, lq, n, m, ls, A, c);                                                       \
  }                                                                                           \
  void col_max(const T* L, int64_t n, T m, T ls, T* nm) { Impl<V>::cmax(L, n, m, ls, nm); }         \
  void col_accum(const T* L, int64_t n, T m, T ls, const T* cm, double* cs) {                     \
    Impl<V>::caccum(L, n, m, ls, cm, cs);                                                       \
  }

ZOO_DEFINE(float, VF)
ZOO_DEFINE(double, VD)

}  // namespace avx2
}  // namespace simd
}  // namespace zoo

#pragma GCC pop_options
#endif
