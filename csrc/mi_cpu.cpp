// CPU kernel of the fused MI op (see docs/kernels.md).
//
// Maps are processed in blocks of R rows; for each block the logits against a tile of Mt
// templates live in a per-thread buffer (R x Mt, 2-16 MiB, see buffer_bytes), never an N x M
// matrix. When all M templates fit one tile (M up to ~500k in float32 at R = 8), the
// block's logits are computed once and reused for the row statistics, the batch-marginal column
// statistics and the gradient; otherwise the row statistics use an online (running max)
// log-sum-exp over the tiles and the later phases recompute the tile logits.
// The two GEMM-shaped products per block (x_b T^T and G_b T) go to ATen's single-threaded BLAS
// call (we are inside at::parallel_for), the row/column work to the vectorised row kernels of
// mi_simd.cpp. Work is split into one deterministic chunk of blocks per thread.
#include "mi_checks.h"
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <vector>

#include "mi_simd.h"

namespace zoo {
namespace {

// Per-thread logit buffer: 32 MiB shared by the threads, 2..16 MiB each. Large blocks matter
// for the second product G_b T (inner dimension M): with 27-row blocks (2 MiB at M = 19,307)
// BLAS ran it at ~half speed, with 217-row blocks (16 MiB) at full speed. The buffers are the
// op's only extra memory besides O(N + M) statistics and the (N, K) gradient.
// ZOO_MI_BUFFER_BYTES overrides the per-thread size (tests of the tiled path; tuning).
int64_t buffer_bytes(int64_t threads) {
  static const int64_t forced = [] {
    const char* e = std::getenv("ZOO_MI_BUFFER_BYTES");
    const long long v = e ? std::atoll(e) : 0;
    return v > 4096 ? int64_t(v) : int64_t(0);
  }();
  if (forced) return forced;
  const int64_t mib = int64_t(1) << 20;
  return std::min(16 * mib, std::max(2 * mib, 32 * mib / std::max<int64_t>(1, threads)));
}
constexpr int64_t kMaxRows = 256;
constexpr int64_t kMinRows = 8;

struct Plan {
  int64_t rows;    // maps per block
  int64_t tile_m;  // templates per tile (== M: resident, no recompute)
};

Plan make_plan(int64_t N, int64_t M, int64_t elem, int64_t threads) {
  Plan p;
  const int64_t budget = buffer_bytes(threads);
  p.tile_m = std::min<int64_t>(M, std::max<int64_t>(64, budget / (kMinRows * elem)));
  p.rows = std::max<int64_t>(1, std::min<int64_t>(kMaxRows, budget / (p.tile_m * elem)));
  // Give every thread several blocks (load balance) but never less than kMinRows per block
  // unless N itself is small.
  int64_t per_thread = (N + 4 * threads - 1) / (4 * threads);
  p.rows = std::max<int64_t>(1, std::min(p.rows, std::max(per_thread, kMinRows)));
  p.rows = std::min(p.rows, N);
  return p;
}

template <typename T>
struct Pass {
  // inputs
  const T* x;
  const T* tmpl;
  int64_t N, M, K;
  const T* lq;        // (M) log marginal, or nullptr (batch pass 1: not known yet)
  bool stats_given;   // stats are inputs (backward op), else outputs
  T* stats;           // (N, 3) per map: max logit m, ls = log sum_j exp(L_ij - m), row MI A
  bool want_cols;     // accumulate the column log-sum-exp of log p (batch pass 1)
  T* dx;              // (N, K) gradient output or nullptr
  T grad_scale;       // dMI/dL = grad_scale * p (a - A); 1/N times the incoming gradient
  // outputs of the column accumulation, one (cm, cs) pair of size M per chunk
  std::vector<std::vector<T>> cm;
  std::vector<std::vector<double>> cs;

  void run() {
    const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
    const Plan plan = make_plan(N, M, sizeof(T), threads);
    const int64_t nblocks = (N + plan.rows - 1) / plan.rows;
    const int64_t nchunks = std::min(threads, nblocks);
    if (want_cols) {
      cm.assign(nchunks, std::vector<T>(M, -std::numeric_limits<T>::infinity()));
      cs.assign(nchunks, std::vector<double>(M, 0.0));
    }
    at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
      std::unique_ptr<T[]> buf(new T[plan.rows * plan.tile_m]);
      std::unique_ptr<T[]> nm(want_cols ? new T[M] : nullptr);
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t b0 = c * nblocks / nchunks, b1 = (c + 1) * nblocks / nchunks;
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t r0 = b * plan.rows, r1 = std::min(N, r0 + plan.rows);
          block(r0, r1, plan.tile_m, buf.get(), nm.get(), want_cols ? cm[c].data() : nullptr,
                want_cols ? cs[c].data() : nullptr);
        }
      }
    });
  }

  // Logits of rows [r0, r1) against templates [j0, j0 + mt) into buf (rows x mt, row-major).
  void logits(int64_t r0, int64_t r1, int64_t j0, int64_t mt, T* buf) const {
    auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    at::Tensor xb = at::from_blob(const_cast<T*>(x + r0 * K), {r1 - r0, K}, opts);
    at::Tensor tb = at::from_blob(const_cast<T*>(tmpl + j0 * K), {mt, K}, opts);
    at::Tensor out = at::from_blob(buf, {r1 - r0, mt}, opts);
    at::mm_out(out, xb, tb.t());
  }

  void block(int64_t r0, int64_t r1, int64_t tile_m, T* buf, T* nm, T* cmc, double* csc) const {
    const int64_t nr = r1 - r0;
    const bool resident = tile_m == M;
    bool have = false;  // buf holds the logits of tile 0 (resident case)
    if (!stats_given) {
      // Row state in double (see mi_simd.h); m is a max of logits, exact in T.
      std::vector<double> m(nr, -std::numeric_limits<double>::infinity()), s(nr, 0.0), t(nr, 0.0);
      for (int64_t j0 = 0; j0 < M; j0 += tile_m) {
        const int64_t mt = std::min(tile_m, M - j0);
        logits(r0, r1, j0, mt, buf);
        for (int64_t i = 0; i < nr; ++i) {
          T tmax;
          double ts, tt;
          simd::row_tile_stats(buf + i * mt, lq ? lq + j0 : nullptr, mt, &tmax, &ts, &tt);
          // Online merge of (m, s, t) with the tile's: rescale both to the common max.
          const double tm = tmax;
          const double nmax = std::max(m[i], tm);
          const bool first = m[i] == -std::numeric_limits<double>::infinity();
          const double a = first ? 0.0 : std::exp(m[i] - nmax);
          const double e = std::exp(tm - nmax);
          t[i] = a * (t[i] + s[i] * (first ? 0.0 : m[i] - nmax)) + e * (tt + ts * (tm - nmax));
          s[i] = a * s[i] + e * ts;
          m[i] = nmax;
        }
      }
      have = resident;
      for (int64_t i = 0; i < nr; ++i) {
        const double ls = std::log(s[i]);
        T* st = stats + (r0 + i) * 3;
        st[0] = T(m[i]);  // exact: a logit
        st[1] = T(ls);
        st[2] = T(t[i] / s[i] - ls);
      }
    }
    if (want_cols) {
      for (int64_t j0 = 0; j0 < M; j0 += tile_m) {
        const int64_t mt = std::min(tile_m, M - j0);
        if (!have) logits(r0, r1, j0, mt, buf);
        std::copy(cmc + j0, cmc + j0 + mt, nm);
        const T* st = stats + r0 * 3;
        for (int64_t i = 0; i < nr; ++i) simd::col_max(buf + i * mt, mt, st[3 * i], st[3 * i + 1], nm);
        simd::col_rescale(cmc + j0, csc + j0, nm, mt);
        for (int64_t i = 0; i < nr; ++i)
          simd::col_accum(buf + i * mt, mt, st[3 * i], st[3 * i + 1], cmc + j0, csc + j0);
      }
    }
    if (dx) {
      auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
      at::Tensor dxb = at::from_blob(dx + r0 * K, {nr, K}, opts);
      for (int64_t j0 = 0; j0 < M; j0 += tile_m) {
        const int64_t mt = std::min(tile_m, M - j0);
        if (!have) logits(r0, r1, j0, mt, buf);
        const T* st = stats + r0 * 3;
        for (int64_t i = 0; i < nr; ++i)
          simd::row_grad(buf + i * mt, lq ? lq + j0 : nullptr, mt, st[3 * i], st[3 * i + 1],
                         st[3 * i + 2], grad_scale);
        at::Tensor g = at::from_blob(buf, {nr, mt}, opts);
        at::Tensor tb = at::from_blob(const_cast<T*>(tmpl + j0 * K), {mt, K}, opts);
        if (j0 == 0) at::mm_out(dxb, g, tb);
        else dxb.addmm_(g, tb);
      }
    }
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mi_forward_cpu(
    const at::Tensor& x_in, const at::Tensor& t_in, bool batch_marginal, bool with_grad) {
  check_mi_inputs(x_in, t_in, "zoo::mi_forward");
  TORCH_INTERNAL_ASSERT(x_in.device().is_cpu());
  at::Tensor x = x_in.contiguous(), tm = t_in.contiguous();
  const int64_t N = x.size(0), M = tm.size(0), K = x.size(1);
  at::Tensor stats = at::empty({N, 3}, x.options());
  at::Tensor lq = at::empty({M}, x.options());
  at::Tensor grad = with_grad ? at::empty({N, K}, x.options()) : at::empty({0, K}, x.options());
  at::Tensor mi;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "zoo_mi_forward_cpu", [&] {
    using T = scalar_t;
    T* lqp = lq.data_ptr<T>();
    if (batch_marginal) {
      // Pass 1: row log-sum-exp and the column log-sum-exp of log p -> log q.
      Pass<T> p1{x.data_ptr<T>(), tm.data_ptr<T>(), N, M, K, nullptr, false, stats.data_ptr<T>(),
                 true, nullptr, T(0), {}, {}};
      p1.run();
      const double log_n = std::log(double(N));
      for (int64_t j = 0; j < M; ++j) {  // merge the per-chunk accumulators in a fixed order
        double cmax = -std::numeric_limits<double>::infinity();
        for (auto& v : p1.cm) cmax = std::max(cmax, double(v[j]));
        double s = 0;
        for (size_t c = 0; c < p1.cm.size(); ++c)
          if (p1.cm[c][j] != -std::numeric_limits<T>::infinity())
            s += p1.cs[c][j] * std::exp(double(p1.cm[c][j]) - cmax);
        lqp[j] = T(cmax + std::log(s) - log_n);
      }
    } else {
      const T v = -std::log(T(M));
      for (int64_t j = 0; j < M; ++j) lqp[j] = v;
    }
    // Pass 2 (the only one for the uniform marginal): row MI and, in the same sweep, dMI/dx.
    Pass<T> p2{x.data_ptr<T>(), tm.data_ptr<T>(), N, M, K, lqp, false, stats.data_ptr<T>(), false,
               with_grad ? grad.data_ptr<T>() : nullptr, T(1) / T(N), {}, {}};
    p2.run();
    // Mean in double: N terms of similar size.
    double acc = 0;
    const T* sp = stats.data_ptr<T>();
    for (int64_t i = 0; i < N; ++i) acc += sp[3 * i + 2];
    mi = at::scalar_tensor(acc / double(N), x.options());
  });
  return {mi, stats, lq, grad};
}

at::Tensor mi_backward_cpu(const at::Tensor& g, const at::Tensor& x_in, const at::Tensor& t_in,
                           const at::Tensor& stats_in, const at::Tensor& lq_in) {
  check_mi_inputs(x_in, t_in, "zoo::mi_backward");
  const int64_t N = x_in.size(0), M = t_in.size(0), K = x_in.size(1);
  TORCH_CHECK(g.numel() == 1, "zoo::mi_backward: grad_mi must be a scalar");
  TORCH_CHECK(stats_in.dim() == 2 && stats_in.size(0) == N && stats_in.size(1) == 3 && lq_in.numel() == M,
              "zoo::mi_backward: statistics do not match the shapes of maps and templates");
  at::Tensor x = x_in.contiguous(), tm = t_in.contiguous();
  at::Tensor stats = stats_in.to(x.dtype()).contiguous();
  at::Tensor lq = lq_in.to(x.dtype()).contiguous();
  at::Tensor dx = at::empty({N, K}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "zoo_mi_backward_cpu", [&] {
    using T = scalar_t;
    const T scale = g.to(at::kDouble).item<double>() / double(N);
    Pass<T> p{x.data_ptr<T>(), tm.data_ptr<T>(), N, M, K, lq.data_ptr<T>(), true,
              stats.data_ptr<T>(), false, dx.data_ptr<T>(), scale, {}, {}};
    p.run();
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(zoo, CPU, m) {
  m.impl("mi_forward", &mi_forward_cpu);
  m.impl("mi_backward", &mi_backward_cpu);
}

}  // namespace zoo
