// The generic algorithm of the row kernels, written once over a vector type V (W lanes) and
// included by each variant's translation unit inside its own namespace (ZOO_SIMD_NS), so the
// scalar and AVX2 instantiations never share a symbol.
// Requires: <cmath>, <cstdint>, <limits> included before the namespace is opened.

template <class V>
struct Impl {
  using T = typename V::T;
  static constexpr int W = V::W;

  static void tile_stats(const T* L, const T* lq, int64_t n, T* pm, double* ps, double* pt) {
    int64_t j = 0;
    typename V::R vm = V::set1(-std::numeric_limits<T>::infinity());
    for (; j + W <= n; j += W) vm = V::max(vm, V::loadu(L + j));
    T m = V::hmax(vm);
    for (; j < n; ++j) m = L[j] > m ? L[j] : m;
    typename V::Acc vs, vt;
    typename V::R vmm = V::set1(m);
    j = 0;
    for (; j + W <= n; j += W) {
      typename V::R d = V::sub(V::loadu(L + j), vmm);
      typename V::R e = V::exp(d);
      vs.add(e);
      if (lq) d = V::sub(d, V::loadu(lq + j));
      vt.add(V::mul(e, d));
    }
    double s = vs.sum(), t = vt.sum();
    for (; j < n; ++j) {
      T d = L[j] - m;
      T e = std::exp(d);
      s += double(e);
      t += double(e * (lq ? d - lq[j] : d));
    }
    *pm = m; *ps = s; *pt = t;
  }

  static void grad(T* L, const T* lq, int64_t n, T m, T ls, T A, T c) {
    int64_t j = 0;
    typename V::R vm = V::set1(m), vl = V::set1(ls), va = V::set1(A), vc = V::set1(c);
    for (; j + W <= n; j += W) {
      typename V::R d = V::sub(V::sub(V::loadu(L + j), vm), vl);  // log p
      typename V::R p = V::exp(d);
      typename V::R a = V::sub(d, va);
      if (lq) a = V::sub(a, V::loadu(lq + j));
      V::storeu(L + j, V::mul(V::mul(vc, p), a));
    }
    for (; j < n; ++j) {
      T d = (L[j] - m) - ls;
      L[j] = c * std::exp(d) * (d - (lq ? lq[j] : T(0)) - A);
    }
  }

  static void cmax(const T* L, int64_t n, T m, T ls, T* nm) {
    int64_t j = 0;
    typename V::R vm = V::set1(m), vl = V::set1(ls);
    for (; j + W <= n; j += W)
      V::storeu(nm + j, V::max(V::loadu(nm + j), V::sub(V::sub(V::loadu(L + j), vm), vl)));
    for (; j < n; ++j) {
      T v = (L[j] - m) - ls;
      nm[j] = v > nm[j] ? v : nm[j];
    }
  }

  // Scalar on purpose: once per template per block, negligible, and needs the -inf guard.
  static void crescale(T* cm, double* cs, const T* nm, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
      if (nm[j] > cm[j]) {
        cs[j] = cm[j] == -std::numeric_limits<T>::infinity() ? 0.0 : cs[j] * std::exp(double(cm[j]) - double(nm[j]));
        cm[j] = nm[j];
      }
    }
  }

  static void caccum(const T* L, int64_t n, T m, T ls, const T* cm, double* cs) {
    int64_t j = 0;
    typename V::R vm = V::set1(m), vl = V::set1(ls);
    for (; j + W <= n; j += W) {
      typename V::R d = V::sub(V::sub(V::sub(V::loadu(L + j), vm), vl), V::loadu(cm + j));
      V::add_to_double(cs + j, V::exp(d));
    }
    for (; j < n; ++j) cs[j] += double(std::exp(((L[j] - m) - ls) - cm[j]));
  }
};
