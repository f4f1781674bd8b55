// CPU kernels of pyvs::systolic_matmul, parallel over (group, quad of rows)
// (for_each_output). The simple path calls pyvs::systolic_output once per
// output; the fast path starts from the clean product (clean_gemm.cpp) and
// adds pyvs::output_patch per output. The events depend only on (seed,
// layer, row, column), so the path, thread count and chunking cannot change
// the result.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "../systolic_matmul.h"

namespace pyvs {
namespace {

struct LocalCounter {
  int64_t injected[32] = {0};
  int64_t corrected[32] = {0};
  void add(int b, bool was_corrected) {
    if (was_corrected) ++corrected[b]; else ++injected[b];
  }
};

// Calls f(g, m, n, stream, counter) for every output, in parallel over
// (group, quad of global rows): the four rows of a quad share one screening
// block per column (fault_model.h), a quarter of a Philox block per output
// instead of one. Each task has its own counter, merged into the call's
// stats at the end.
// kEventsOnly: skip the outputs whose screening word already rules out any
// event (the patches' case: they have nothing to do), before any per-output
// work; that test is all most outputs cost.
template <bool kEventsOnly, typename F>
void for_each_output(const PreparedMatmul& c, int64_t work_per_output, const F& f) {
  const MatmulArgs& r = c.r;
  const FaultTables& t = c.t;
  if (r.M == 0 || r.N == 0) return;
  const int64_t q0 = r.row_offset >> 2, q1 = (r.row_offset + r.M - 1) >> 2;
  const int64_t quads = q1 - q0 + 1;
  const int64_t per_quad = std::max<int64_t>(1, 4 * r.N * work_per_output);
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / per_quad);
  int64_t* S = c.stats.data_ptr<int64_t>();
  std::mutex stats_mutex;
  at::parallel_for(0, r.G * quads, grain, [&](int64_t begin, int64_t end) {
    LocalCounter counter;
    for (int64_t gq = begin; gq < end; ++gq) {
      const int64_t g = gq / quads, quad = q0 + gq % quads;
      // local rows of this quad: global rows 4 * quad .. + 3, clipped to the call
      const int64_t m0 = std::max<int64_t>(0, 4 * quad - r.row_offset);
      const int64_t m1 = std::min<int64_t>(r.M, 4 * quad + 4 - r.row_offset);
      for (int64_t n = 0; n < r.N; ++n) {
        const uint32_t col = uint32_t(g * r.N + n);
        const Philox4 block = t.any ? screen_block(r.seed, r.layer, uint32_t(4 * quad), col)
                                    : Philox4{{0, 0, 0, 0}};
        for (int64_t m = m0; m < m1; ++m) {
          const uint32_t row = uint32_t(r.row_offset + m);
          const uint32_t screen = block_word(block, row & 3u);
          if (kEventsOnly && (int64_t(screen) << kScreenShift) >= t.gap[t.K]) continue;
          f(g, m, n, OutputStream(r.seed, r.layer, row, col, screen), counter);
        }
      }
    }
    std::lock_guard<std::mutex> lock(stats_mutex);
    for (int b = 0; b < r.W; ++b) {
      S[b] += counter.injected[b];
      S[r.W + b] += counter.corrected[b];
    }
  });
}

// Row m of group g: a plain pointer when K is contiguous (the dot products
// between events then vectorize), else a Strided accessor.
template <typename ActT, bool kUnitK>
auto row_of(const PreparedMatmul& c, int64_t g, int64_t m) {
  if constexpr (kUnitK) {
    return c.acts<ActT>(g, m).p;
  } else {
    return c.acts<ActT>(g, m);
  }
}

// The simple path: out = pyvs::systolic_output, the definition step by step.
template <typename ActT, bool kUnitK>
void run_simple(const PreparedMatmul& c) {
  const MatmulArgs& r = c.r;
  int32_t* O = c.out.data_ptr<int32_t>();
  for_each_output<false>(c, std::max<int64_t>(r.K, 1),
                         [&](int64_t g, int64_t m, int64_t n, const OutputStream& rs,
                             LocalCounter& counter) {
    O[(g * r.M + m) * r.N + n] = systolic_output(row_of<ActT, kUnitK>(c, g, m), c.weights(g, n), 1,
                                                 r.rows, c.t, r.protect, r.drop, rs, counter);
  });
}

// The fast path's patches: out holds the clean product; every output's
// events are drawn (pyvs::output_patch) and its changes added.
template <typename ActT>
void run_patches(const PreparedMatmul& c) {
  const MatmulArgs& r = c.r;
  int32_t* O = c.out.data_ptr<int32_t>();
  // A quarter of a random draw per output, plus MACs only around flips.
  for_each_output<true>(c, 8, [&](int64_t g, int64_t m, int64_t n, const OutputStream& rs,
                                  LocalCounter& counter) {
    const uint32_t patch = output_patch(c.acts<ActT>(g, m), c.weights(g, n), 1, r.rows, c.t,
                                        r.protect, r.drop, rs, counter);
    if (patch) {  // leaves the other outputs' cache lines clean
      const int64_t o = (g * r.M + m) * r.N + n;
      O[o] = int32_t(uint32_t(O[o]) + patch);
    }
  });
}

// The clean product of one column per group (depthwise convs), directly:
// out[g, m] = sum over K-tiles of sign_extend_W(tile sum).
template <typename ActT>
at::Tensor depthwise_clean_kernel(const at::Tensor& a3, const at::Tensor& w3, int W, int64_t rows) {
  const int64_t G = a3.size(0), M = a3.size(1), K = a3.size(2);
  const int64_t sG = a3.stride(0), sM = a3.stride(1), sK = a3.stride(2);
  at::Tensor out = at::empty({G, M, 1}, a3.options().dtype(at::kInt));
  // Weights k-major, [K, G] int32, so that a loop over g reads them in order.
  const at::Tensor wk = w3.reshape({G, K}).t().contiguous().to(at::kInt);
  const int32_t* WK = wk.const_data_ptr<int32_t>();
  const ActT* A = a3.const_data_ptr<ActT>();
  int32_t* O = out.data_ptr<int32_t>();
  const uint32_t mask = width_mask(W);
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, G * K));
  if (sG != 1) {  // rows: each output's K activations in turn
    at::parallel_for(0, G * M, std::max<int64_t>(1, grain * G), [&](int64_t b, int64_t e) {
      for (int64_t gm = b; gm < e; ++gm) {
        const int64_t g = gm / M, m = gm % M;
        uint32_t total = 0;
        for (int64_t k0 = 0; k0 < K; k0 += rows) {
          uint32_t tile = 0;
          for (int64_t k = k0; k < std::min(k0 + rows, K); ++k)
            tile += uint32_t(int32_t(A[g * sG + m * sM + k * sK]) * WK[k * G + g]);
          total += uint32_t(sign_extend(tile & mask, W));
        }
        O[gm] = int32_t(total);
      }
    });
    return out;
  }
  // A layer's channels-last im2col (stride 1 over g): rows m are split among
  // threads, and within a row the loop over the groups vectorizes.
  at::parallel_for(0, M, grain, [&](int64_t m0, int64_t m1) {
    std::vector<uint32_t> total(G), tile(G);
    for (int64_t m = m0; m < m1; ++m) {
      std::fill(total.begin(), total.end(), 0u);
      for (int64_t k0 = 0; k0 < K; k0 += rows) {
        std::fill(tile.begin(), tile.end(), 0u);
        for (int64_t k = k0; k < std::min(k0 + rows, K); ++k) {
          const ActT* a = A + m * sM + k * sK;
          const int32_t* w = WK + k * G;
          for (int64_t g = 0; g < G; ++g) tile[g] += uint32_t(int32_t(a[g]) * w[g]);
        }
        for (int64_t g = 0; g < G; ++g) total[g] += uint32_t(sign_extend(tile[g] & mask, W));
      }
      for (int64_t g = 0; g < G; ++g) O[g * M + m] = int32_t(total[g]);
    }
  });
  return out;
}

at::Tensor depthwise_clean(const at::Tensor& a3, const at::Tensor& w3, int W, int64_t rows) {
  at::Tensor out;
  PYVS_DISPATCH_ACTIVATIONS(a3.scalar_type(), "depthwise_clean", [&] {
    out = depthwise_clean_kernel<scalar_t>(a3, w3, W, rows);
  });
  return out;
}

// Below this K, direct dot products beat a GEMM plus patches
// (scripts/bench_op.py, benchmarks/RESULTS.md: at K = 9, depthwise convs at
// 0.53 V, the GEMM path is 1.4x slower; at K = 27 it is over 10x faster).
// One group: torch._int_mm (oneDNN's int8 GEMM; MobileNetV2's 36 ungrouped
// GEMMs on 25 images take 124 ms against 313 ms by exact float32 BLAS);
// several: one batched float32 GEMM rather than a padded int_mm per group.
// One column per group (depthwise convs, K = 9): the direct product above
// plus patches.
const Backend kCpu{/*min_fast_k=*/16, GemmMethod::kIntMM, GemmMethod::kFloat32, &depthwise_clean};

std::tuple<at::Tensor, at::Tensor> systolic_matmul_cpu(
    const at::Tensor& a, const at::Tensor& w, const at::Tensor& p_bits, int64_t protect,
    int64_t seed, int64_t layer, int64_t row_offset, int64_t rows, c10::string_view impl,
    bool drop, const std::optional<at::Tensor>& patterns, const std::optional<at::Tensor>& joint) {
  TORCH_INTERNAL_ASSERT(a.device().is_cpu());
  const PreparedMatmul c =
      prepare_matmul(a, w, p_bits, protect, seed, layer, row_offset, rows, impl, drop, patterns, joint,
                     kCpu);
  if (!c.fast || c.t.any) {
    PYVS_DISPATCH_ACTIVATIONS(c.a3.scalar_type(), "systolic_matmul_cpu", [&] {
      if (c.fast) {
        run_patches<scalar_t>(c);
      } else if (c.a3.stride(2) == 1) {
        run_simple<scalar_t, true>(c);
      } else {
        run_simple<scalar_t, false>(c);
      }
    });
  }
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyvs, CPU, m) {
  m.impl("systolic_matmul", &systolic_matmul_cpu);
}

}  // namespace pyvs
