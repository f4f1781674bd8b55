// CUDA kernels of pyvs::systolic_matmul, one thread per (quad of rows,
// column): the simple path runs the same pyvs::systolic_output as the CPU
// kernel, hence the same bits; the fast path takes the clean product from
// torch._int_mm (cuBLASLt int8 tensor cores, clean_gemm.cpp) and adds
// pyvs::output_patch to it.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../systolic_matmul.h"

namespace pyvs {
namespace {

// Per-block counters in shared memory, flushed once per block: at heavy
// error rates one global atomic per event would serialize.
struct BlockCounter {
  unsigned long long* counts;  // [2][32]: injected, corrected
  __device__ void add(int b, bool was_corrected) {
    atomicAdd(counts + (was_corrected ? 32 : 0) + b, 1ull);
  }
};

__device__ void zero_counts(unsigned long long* counts) {
  for (int i = threadIdx.x; i < 64; i += blockDim.x) counts[i] = 0;
  __syncthreads();
}

__device__ void flush_counts(const unsigned long long* counts, unsigned long long* stats, int W) {
  __syncthreads();
  for (int i = threadIdx.x; i < 2 * W; i += blockDim.x) {
    const int row = i / W, b = i % W;
    const unsigned long long c = counts[row * 32 + b];
    if (c) atomicAdd(stats + row * W + b, c);
  }
}

// Both kernels run one thread per (group, quad of global rows, column): it
// computes the quad's screening block once (a quarter of a Philox block per
// output) and walks its (up to) four outputs. Threads of a warp take
// consecutive columns, or, with groups_inner (one column per group, the
// groups innermost in a's and out's memory: a depthwise conv's
// channels-last taps), consecutive groups, so that their activation loads
// and output stores are coalesced.
struct QuadItem {
  int64_t g, n, quad;
};

__device__ QuadItem quad_item(int64_t idx, const MatmulArgs& r, int64_t q0, int64_t quads,
                              bool groups_inner) {
  if (groups_inner) {  // N == 1
    return {idx % r.G, 0, q0 + idx / r.G};
  }
  const int64_t gq = idx / r.N;
  return {gq / quads, idx % r.N, q0 + gq % quads};
}

// A: activations, row m of group g at A + g * sA.x + m * sA.y, its K values
// sA.z apart. W: column-major weights, those of global column c at W + c * K.
// O: output (g, m, n) at O + g * sO.x + m * sO.y + n * sO.z.
//
// The simple path: pyvs::systolic_output for every output, the same
// function as the CPU kernel's, hence the same bits.
template <typename ActT>
__global__ void simple_kernel(const ActT* __restrict__ A, longlong3 sA, const int8_t* __restrict__ W,
                              int32_t* __restrict__ O, longlong3 sO, unsigned long long* stats,
                              MatmulArgs r, FaultTables t, int64_t q0, int64_t quads, bool groups_inner) {
  __shared__ unsigned long long counts[64];
  zero_counts(counts);
  BlockCounter counter{counts};
  const int64_t total = r.G * quads * r.N;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const QuadItem it = quad_item(idx, r, q0, quads, groups_inner);
    const uint32_t col = uint32_t(it.g * r.N + it.n);
    const Philox4 block = t.any ? screen_block(r.seed, r.layer, uint32_t(4 * it.quad), col)
                                : Philox4{{0u, 0u, 0u, 0u}};
    // local rows of this quad: global rows 4 * quad .. + 3, clipped to the call
    const int64_t lo = 4 * it.quad - int64_t(r.row_offset), hi = lo + 4;
    const int64_t m0 = lo > 0 ? lo : 0, m1 = hi < r.M ? hi : r.M;
    for (int64_t m = m0; m < m1; ++m) {
      const uint32_t row = uint32_t(r.row_offset + m);
      const OutputStream rs(r.seed, r.layer, row, col, block_word(block, row & 3u));
      O[it.g * sO.x + m * sO.y + it.n * sO.z] =
          systolic_output(Strided<ActT>{A + it.g * sA.x + m * sA.y, sA.z}, W + int64_t(col) * r.K, 1,
                          r.rows, t, r.protect, r.drop, rs, counter);
    }
  }
  flush_counts(counts, stats, r.W);
}

// The fast path's patches: O holds the clean product; pyvs::output_patch
// draws each output's events, and only outputs whose sums change read A and W.
template <typename ActT>
__global__ void patch_kernel(const ActT* __restrict__ A, longlong3 sA, const int8_t* __restrict__ W,
                             int32_t* __restrict__ O, longlong3 sO, unsigned long long* stats,
                             MatmulArgs r, FaultTables t, int64_t q0, int64_t quads, bool groups_inner) {
  __shared__ unsigned long long counts[64];
  zero_counts(counts);
  BlockCounter counter{counts};
  const int64_t total = r.G * quads * r.N;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const QuadItem it = quad_item(idx, r, q0, quads, groups_inner);
    const uint32_t col = uint32_t(it.g * r.N + it.n);
    const Philox4 block = screen_block(r.seed, r.layer, uint32_t(4 * it.quad), col);
    const int64_t lo = 4 * it.quad - int64_t(r.row_offset), hi = lo + 4;
    const int64_t m0 = lo > 0 ? lo : 0, m1 = hi < r.M ? hi : r.M;
    for (int64_t m = m0; m < m1; ++m) {
      const uint32_t row = uint32_t(r.row_offset + m);
      const OutputStream rs(r.seed, r.layer, row, col, block_word(block, row & 3u));
      const uint32_t patch = output_patch(Strided<ActT>{A + it.g * sA.x + m * sA.y, sA.z},
                                          W + int64_t(col) * r.K, 1, r.rows, t, r.protect, r.drop, rs, counter);
      if (patch) {
        int32_t* o = O + it.g * sO.x + m * sO.y + it.n * sO.z;
        *o = int32_t(uint32_t(*o) + patch);
      }
    }
  }
  flush_counts(counts, stats, r.W);
}

constexpr int kThreads = 256;

int64_t grid_for(int64_t items) {
  return std::min<int64_t>((items + kThreads - 1) / kThreads, 1 << 20);
}

// Below this K the simple kernel beats a tensor-core GEMM plus patches
// (H200, scripts/bench_op.py: at K = 27 and 32 the two are within 10 % at
// 0.53 V; depthwise convs, K = 9, run 4-7x faster simple). Several groups
// take one batched float32 GEMM (exact in K-chunks, clean_gemm.cpp) rather
// than one padded torch._int_mm launch per group. The simple kernel reads
// any strides (no copy of a depthwise conv's taps).
constexpr Backend kCuda{/*min_fast_k=*/32, GemmMethod::kIntMM, GemmMethod::kFloat32, nullptr,
                        /*strided_simple=*/true};

std::tuple<at::Tensor, at::Tensor> systolic_matmul_cuda(
    const at::Tensor& a, const at::Tensor& w, const at::Tensor& p_bits, int64_t protect,
    int64_t seed, int64_t layer, int64_t row_offset, int64_t rows, c10::string_view impl,
    bool drop, const std::optional<at::Tensor>& patterns, const std::optional<at::Tensor>& joint) {
  TORCH_INTERNAL_ASSERT(a.device().is_cuda());
  const c10::cuda::CUDAGuard guard(a.device());
  const PreparedMatmul c =
      prepare_matmul(a, w, p_bits, protect, seed, layer, row_offset, rows, impl, drop, patterns, joint,
                     kCuda);
  const MatmulArgs& r = c.r;
  if (r.G * r.M * r.N == 0 || (c.fast && !c.t.any)) return c.result();
  auto* S = reinterpret_cast<unsigned long long*>(c.stats.data_ptr<int64_t>());
  auto stream = at::cuda::getCurrentCUDAStream();
  // Quads of global rows covering [row_offset, row_offset + M).
  const int64_t q0 = int64_t(r.row_offset) >> 2;
  const int64_t quads = ((int64_t(r.row_offset) + r.M - 1) >> 2) - q0 + 1;
  const longlong3 sA{c.a3.stride(0), c.a3.stride(1), c.a3.stride(2)};
  const longlong3 sO{c.out.stride(0), c.out.stride(1), c.out.stride(2)};
  const int64_t grid = grid_for(r.G * quads * r.N);
  PYVS_DISPATCH_ACTIVATIONS(c.a3.scalar_type(), "systolic_matmul_cuda", [&] {
    const scalar_t* A = c.a3.const_data_ptr<scalar_t>();
    const int8_t* W = c.w3.const_data_ptr<int8_t>();
    int32_t* O = c.out.data_ptr<int32_t>();
    if (c.fast) {
      patch_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(A, sA, W, O, sO, S, r, c.t, q0, quads,
                                                             c.groups_inner);
    } else {
      simple_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(A, sA, W, O, sO, S, r, c.t, q0, quads,
                                                              c.groups_inner);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyvs, CUDA, m) {
  m.impl("systolic_matmul", &systolic_matmul_cuda);
}

}  // namespace pyvs
