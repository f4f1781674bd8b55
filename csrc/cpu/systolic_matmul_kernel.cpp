// CPU kernels of pyvs::systolic_matmul, parallel over (group, quad of rows)
// (for_each_output). The simple path
// calls pyvs::systolic_output once per output; the fast path computes the
// clean product with an exact GEMM (clean_gemm.cpp) and adds
// pyvs::output_patch per output. The events depend only on (seed, layer,
// row, column), so the path, thread count and chunking cannot change the
// result.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <mutex>
#include <vector>

#include "../ops.h"

namespace pyvs {
namespace {

struct LocalCounter {
  int64_t injected[32] = {0};
  int64_t corrected[32] = {0};
  void add(int b, bool was_corrected) {
    if (was_corrected) ++corrected[b]; else ++injected[b];
  }
};

// Calls f(g, m, n, stream) for every output, in parallel over (group, quad
// of global rows): the four rows of a quad share one screening block per
// column (see csrc/pyvs.h), a quarter of a Philox block per output instead
// of one. Each task has its own counter, merged into S at the end. The
// events depend only on (seed, layer, row, column), so neither the
// grouping nor the thread count can change the result.
// kEventsOnly: skip the outputs whose screening word already rules out any
// event (the patches' case: they have nothing to do), before any per-output
// work; that test is all most outputs cost.
template <bool kEventsOnly, typename F>
void for_each_output(const MatmulArgs& r, const FaultTables& t, int64_t work_per_output,
                     int64_t* S, const F& f) {
  if (r.M == 0 || r.N == 0) return;
  const int64_t q0 = r.row_offset >> 2, q1 = (r.row_offset + r.M - 1) >> 2;
  const int64_t quads = q1 - q0 + 1;
  const int64_t per_quad = std::max<int64_t>(1, 4 * r.N * work_per_output);
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / per_quad);
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

// The simple path: out[o] = pyvs::systolic_output, the definition step by step.
template <typename ActT>
void run_cpu(const MatmulArgs& r, const at::Tensor& a3, const at::Tensor& wt,
             const FaultTables& t, at::Tensor& out, at::Tensor& stats) {
  const ActT* A = a3.const_data_ptr<ActT>();
  const int8_t* Wt = wt.const_data_ptr<int8_t>();  // [G, N, K]: each output's weights contiguous
  int32_t* O = out.data_ptr<int32_t>();
  for_each_output<false>(r, t, std::max<int64_t>(r.K, 1), stats.data_ptr<int64_t>(),
                  [&](int64_t g, int64_t m, int64_t n, const OutputStream& rs, LocalCounter& c) {
    O[(g * r.M + m) * r.N + n] = systolic_output(A + (g * r.M + m) * r.K, Wt + (g * r.N + n) * r.K,
                                                 1, r.rows, t, r.protect, rs, c);
  });
}

// The fast path's patches: out already holds the clean product; every
// output's events are drawn (pyvs::output_patch) and its flips added.
template <typename ActT>
void patch_cpu(const MatmulArgs& r, const at::Tensor& a3, const at::Tensor& w3,
               const FaultTables& t, at::Tensor& out, at::Tensor& stats) {
  const ActT* A = a3.const_data_ptr<ActT>();
  const int8_t* Wm = w3.const_data_ptr<int8_t>();  // [G, K, N]: read rarely, strided
  int32_t* O = out.data_ptr<int32_t>();
  // A quarter of a random draw per output, plus MACs only around flips.
  for_each_output<true>(r, t, 8, stats.data_ptr<int64_t>(),
                  [&](int64_t g, int64_t m, int64_t n, const OutputStream& rs, LocalCounter& c) {
    const uint32_t patch = output_patch(A + (g * r.M + m) * r.K, Wm + g * r.K * r.N + n, r.N,
                                        r.rows, t, r.protect, rs, c);
    if (patch) {  // leaves the other outputs' cache lines clean
      const int64_t o = (g * r.M + m) * r.N + n;
      O[o] = int32_t(uint32_t(O[o]) + patch);
    }
  });
}

// Below this K, direct dot products beat a float32 GEMM plus patches
// (scripts/bench_op.py, benchmarks/RESULTS.md: at K = 9, depthwise convs at
// 0.53 V, the GEMM path is 1.4x slower; at K = 27 it is over 10x faster).
constexpr int64_t kMinFastK = 16;

std::tuple<at::Tensor, at::Tensor> systolic_matmul_cpu(
    const at::Tensor& a, const at::Tensor& w, const at::Tensor& p_bits,
    int64_t protect, int64_t seed, int64_t layer, int64_t row_offset,
    int64_t rows, c10::string_view impl) {
  const MatmulArgs r =
      check_matmul_args(a, w, p_bits, protect, seed, layer, row_offset, rows);
  TORCH_INTERNAL_ASSERT(a.device().is_cpu());
  const at::Tensor a3 = a.reshape({r.G, r.M, r.K}).contiguous();
  const at::Tensor w3 = w.reshape({r.G, r.K, r.N}).contiguous();
  bool any = false;
  const at::Tensor packed = make_fault_tables(p_bits, r.K, &any);
  const FaultTables t = view_fault_tables(packed, r.W, r.K, any);
  const std::vector<int64_t> shape =
      r.batched ? std::vector<int64_t>{r.G, r.M, r.N} : std::vector<int64_t>{r.M, r.N};
  at::Tensor stats = at::zeros({2, r.W}, a.options().dtype(at::kLong));
  at::Tensor out;
  if (use_fast_path(impl, r, p_bits, kMinFastK)) {
    out = clean_systolic_gemm(a3, w3, r.W, r.rows, GemmMethod::kFloat32).view(shape);
    if (any) {
      if (a.scalar_type() == at::kByte) {
        patch_cpu<uint8_t>(r, a3, w3, t, out, stats);
      } else {
        patch_cpu<int8_t>(r, a3, w3, t, out, stats);
      }
    }
  } else {
    out = at::empty(shape, a.options().dtype(at::kInt));
    // [G, N, K] so that each output's weights are contiguous.
    const at::Tensor wt = w3.transpose(1, 2).contiguous();
    if (a.scalar_type() == at::kByte) {
      run_cpu<uint8_t>(r, a3, wt, t, out, stats);
    } else {
      run_cpu<int8_t>(r, a3, wt, t, out, stats);
    }
  }
  return {out, stats};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyvs, CPU, m) {
  m.impl("systolic_matmul", &systolic_matmul_cpu);
}

}  // namespace pyvs
