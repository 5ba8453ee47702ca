// AVX-512F variant of the row kernels (16 floats / 8 doubles per vector), chosen at run time
// over the AVX2 one when the CPU has AVX-512F (mi_simd.cpp). Same rules as mi_simd_avx2.cpp:
// target pragma after the standard headers, no torch header, SLEEF's 1-ulp exp from
// libtorch_cpu.
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

extern "C" {
__m512 Sleef_expf16_u10(__m512);
__m512d Sleef_expd8_u10(__m512d);
}

namespace zoo {
namespace simd {
namespace avx512 {

struct VF {
  using T = float;
  using R = __m512;
  static constexpr int W = 16;
  static R loadu(const T* p) { return _mm512_loadu_ps(p); }
  static void storeu(T* p, R v) { _mm512_storeu_ps(p, v); }
  static R set1(T v) { return _mm512_set1_ps(v); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R exp(R a) { return Sleef_expf16_u10(a); }
  static T hmax(R a) { return _mm512_reduce_max_ps(a); }
  static __m256 lo(R v) { return _mm512_castps512_ps256(v); }
  static __m256 hi(R v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  }
  static void add_to_double(double* p, R v) {  // p[0..16) += v, in double
    _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(p), _mm512_cvtps_pd(lo(v))));
    _mm512_storeu_pd(p + 8, _mm512_add_pd(_mm512_loadu_pd(p + 8), _mm512_cvtps_pd(hi(v))));
  }
  struct Acc {  // 16 float lanes summed into 2 x 8 double lanes
    __m512d l, h;
    Acc() : l(_mm512_setzero_pd()), h(_mm512_setzero_pd()) {}
    void add(R a) {
      l = _mm512_add_pd(l, _mm512_cvtps_pd(lo(a)));
      h = _mm512_add_pd(h, _mm512_cvtps_pd(hi(a)));
    }
    double sum() const { return _mm512_reduce_add_pd(_mm512_add_pd(l, h)); }
  };
};

struct VD {
  using T = double;
  using R = __m512d;
  static constexpr int W = 8;
  static R loadu(const T* p) { return _mm512_loadu_pd(p); }
  static void storeu(T* p, R v) { _mm512_storeu_pd(p, v); }
  static R set1(T v) { return _mm512_set1_pd(v); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static R sub(R a, R b) { return _mm512_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static R max(R a, R b) { return _mm512_max_pd(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R exp(R a) { return Sleef_expd8_u10(a); }
  static T hmax(R a) { return _mm512_reduce_max_pd(a); }
  static void add_to_double(double* p, R v) { _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(p), v)); }
  struct Acc {
    __m512d v;
    Acc() : v(_mm512_setzero_pd()) {}
    void add(R a) { v = _mm512_add_pd(v, a); }
    double sum() const { return _mm512_reduce_add_pd(v); }
  };
};

#include "mi_simd_impl.h"

#define ZOO_DEFINE(T, V)                                                                      \
  void row_tile_stats(const T* L, const T* lq, int64_t n, T* m, double* s, double* t) {       \
    Impl<V>::tile_stats(L, lq, n, m, s, t);                                                   \
  }                                                                                           \
  void row_grad(T* L, const T* lq, int64_t n, T m, T ls, T A, T c) {                          \
    Impl<V>::grad(L, lq, n, m, ls, A, c);                                                     \
  }                                                                                           \
  void col_max(const T* L, int64_t n, T m, T ls, T* nm) { Impl<V>::cmax(L, n, m, ls, nm); }   \
  void col_accum(const T* L, int64_t n, T m, T ls, const T* cm, double* cs) {                 \
    Impl<V>::caccum(L, n, m, ls, cm, cs);                                                     \
  }

ZOO_DEFINE(float, VF)
ZOO_DEFINE(double, VD)

}  // namespace avx512
}  // namespace simd
}  // namespace zoo

#pragma GCC pop_options
#endif
