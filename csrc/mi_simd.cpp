// Portable (scalar) variant of the row kernels and the runtime dispatch to the AVX-512
// (mi_simd_avx512.cpp) or AVX2 (mi_simd_avx2.cpp) variant when the CPU has them.
// ZOO_SIMD=avx2|scalar caps the choice (tests compare the variants against each other).
#include "mi_simd.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace zoo {
namespace simd {

#if defined(__x86_64__) || defined(__i386__)
namespace avx2 {
void row_tile_stats(const float*, const float*, int64_t, float*, double*, double*);
void row_tile_stats(const double*, const double*, int64_t, double*, double*, double*);
void row_grad(float*, const float*, int64_t, float, float, float, float);
void row_grad(double*, const double*, int64_t, double, double, double, double);
void col_max(const float*, int64_t, float, float, float*);
void col_max(const double*, int64_t, double, double, double*);
void col_accum(const float*, int64_t, float, float, const float*, double*);
void col_accum(const double*, int64_t, double, double, const double*, double*);
}  // namespace avx2
namespace avx512 {
void row_tile_stats(const float*, const float*, int64_t, float*, double*, double*);
void row_tile_stats(const double*, const double*, int64_t, double*, double*, double*);
void row_grad(float*, const float*, int64_t, float, float, float, float);
void row_grad(double*, const double*, int64_t, double, double, double, double);
void col_max(const float*, int64_t, float, float, float*);
void col_max(const double*, int64_t, double, double, double*);
void col_accum(const float*, int64_t, float, float, const float*, double*);
void col_accum(const double*, int64_t, double, double, const double*, double*);
}  // namespace avx512
static const char* const kCap = std::getenv("ZOO_SIMD");
static const bool kAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          !(kCap && std::strcmp(kCap, "scalar") == 0);
static const bool kAvx512 = kAvx2 && __builtin_cpu_supports("avx512f") &&
                            !(kCap && std::strcmp(kCap, "avx2") == 0);
#define ZOO_DISPATCH(call) \
  do {                     \
    if (kAvx512) {         \
      avx512::call;        \
      return;              \
    }                      \
    if (kAvx2) {           \
      avx2::call;          \
      return;              \
    }                      \
  } while (0)
#else
static const bool kAvx2 = false;
static const bool kAvx512 = false;
#define ZOO_DISPATCH(call) \
  do {                     \
  } while (0)
#endif

namespace scalar {
template <class TT>
struct V1 {  // one lane: the generic code degenerates to plain loops
  using T = TT;
  using R = TT;
  static constexpr int W = 1;
  static R loadu(const T* p) { return *p; }
  static void storeu(T* p, R v) { *p = v; }
  static R set1(T v) { return v; }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R max(R a, R b) { return a > b ? a : b; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static R exp(R a) { return std::exp(a); }
  static T hmax(R a) { return a; }
  static void add_to_double(double* p, R v) { *p += double(v); }
  struct Acc {
    double v = 0;
    void add(R a) { v += double(a); }
    double sum() const { return v; }
  };
};
#include "mi_simd_impl.h"
}  // namespace scalar

#define ZOO_DEFINE(T)                                                                         \
  void row_tile_stats(const T* L, const T* lq, int64_t n, T* m, double* s, double* t) {       \
    ZOO_DISPATCH(row_tile_stats(L, lq, n, m, s, t));                                          \
    scalar::Impl<scalar::V1<T>>::tile_stats(L, lq, n, m, s, t);                               \
  }                                                                                           \
  void row_grad(T* L, const T* lq, int64_t n, T m, T ls, T A, T c) {                              \
    ZOO_DISPATCH(row_grad(L, lq, n, m, ls, A, c));                                              \
    scalar::Impl<scalar::V1<T>>::grad(L, lq, n, m, ls, A, c);                                 \
  }                                                                                           \
  void col_max(const T* L, int64_t n, T m, T ls, T* nm) {                                         \
    ZOO_DISPATCH(col_max(L, n, m, ls, nm));                                                     \
    scalar::Impl<scalar::V1<T>>::cmax(L, n, m, ls, nm);                                         \
  }                                                                                           \
  void col_rescale(T* cm, double* cs, const T* nm, int64_t n) {                               \
    scalar::Impl<scalar::V1<T>>::crescale(cm, cs, nm, n);                                     \
  }                                                                                           \
  void col_accum(const T* L, int64_t n, T m, T ls, const T* cm, double* cs) {                     \
    ZOO_DISPATCH(col_accum(L, n, m, ls, cm, cs));                                               \
    scalar::Impl<scalar::V1<T>>::caccum(L, n, m, ls, cm, cs);                                   \
  }

ZOO_DEFINE(float)
ZOO_DEFINE(double)

const char* variant() { return kAvx512 ? "avx512" : kAvx2 ? "avx2" : "scalar"; }

}  // namespace simd
}  // namespace zoo
