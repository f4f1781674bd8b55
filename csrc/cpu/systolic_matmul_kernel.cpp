// CPU kernels of pyvs::systolic_matmul, parallel over rows. The simple path
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

template <typename ActT>
void run_cpu(const MatmulArgs& r, const at::Tensor& a3, const at::Tensor& wt,
             const FaultTables& t, at::Tensor& out, at::Tensor& stats) {
  const ActT* A = a3.const_data_ptr<ActT>();
  const int8_t* Wt = wt.const_data_ptr<int8_t>();  // [G, N, K]
  int32_t* O = out.data_ptr<int32_t>();
  int64_t* S = stats.data_ptr<int64_t>();
  std::mutex stats_mutex;
  const int64_t rows_total = r.G * r.M;
  const int64_t work_per_row = std::max<int64_t>(1, r.N * std::max<int64_t>(r.K, 1));
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / work_per_row);
  at::parallel_for(0, rows_total, grain, [&](int64_t begin, int64_t end) {
    LocalCounter counter;
    for (int64_t gm = begin; gm < end; ++gm) {
      const int64_t g = gm / r.M, m = gm % r.M;
      const ActT* a_row = A + gm * r.K;
      for (int64_t n = 0; n < r.N; ++n) {
        const OutputStream rs(r.seed, r.layer, uint32_t(r.row_offset + m),
                              uint32_t(g * r.N + n));
        O[gm * r.N + n] = systolic_output(a_row, Wt + (g * r.N + n) * r.K, 1,
                                          r.rows, t, r.protect, rs, counter);
      }
    }
    std::lock_guard<std::mutex> lock(stats_mutex);
    for (int b = 0; b < r.W; ++b) {
      S[b] += counter.injected[b];
      S[r.W + b] += counter.corrected[b];
    }
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
  int64_t* S = stats.data_ptr<int64_t>();
  std::mutex stats_mutex;
  // About one random draw per output, plus MACs only around flips.
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, 8 * r.N));
  at::parallel_for(0, r.G * r.M, grain, [&](int64_t begin, int64_t end) {
    LocalCounter counter;
    for (int64_t gm = begin; gm < end; ++gm) {
      const int64_t g = gm / r.M, m = gm % r.M;
      const ActT* a_row = A + gm * r.K;
      for (int64_t n = 0; n < r.N; ++n) {
        const OutputStream rs(r.seed, r.layer, uint32_t(r.row_offset + m),
                              uint32_t(g * r.N + n));
        const uint32_t patch = output_patch(a_row, Wm + g * r.K * r.N + n, r.N,
                                            r.rows, t, r.protect, rs, counter);
        O[gm * r.N + n] = int32_t(uint32_t(O[gm * r.N + n]) + patch);
      }
    }
    std::lock_guard<std::mutex> lock(stats_mutex);
    for (int b = 0; b < r.W; ++b) {
      S[b] += counter.injected[b];
      S[r.W + b] += counter.corrected[b];
    }
  });
}

// Below this K, direct dot products beat a float64 GEMM plus patches
// (measured with scripts/bench_op.py: at K = 9, depthwise convs, the GEMM
// path is 2.3x slower; at K = 27 it is 5x faster).
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
