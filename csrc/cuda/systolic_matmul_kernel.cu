// CUDA kernels of pyvs::systolic_matmul. The simple path: one thread per
// output, running the same pyvs::systolic_output as the CPU kernel, hence the
// same bits; threads of a warp take consecutive columns, so their activation
// loads are broadcasts. The fast path: the clean product from torch._int_mm
// (cuBLASLt int8 tensor cores, clean_gemm.cpp), then one thread per
// (quad of rows, column) adding pyvs::output_patch to its outputs.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../systolic_matmul.h"

namespace pyvs {
namespace {

struct GlobalCounter {
  unsigned long long* injected;
  unsigned long long* corrected;
  __device__ void add(int b, bool was_corrected) {
    // Events are rare; one atomic per event bit is cheaper than per-thread
    // arrays of 2 x 32 counters.
    atomicAdd(was_corrected ? corrected + b : injected + b, 1ull);
  }
};

// A: activations, row m of group g at A + g * sA.x + m * sA.y, its K values
// sA.z apart. W: column-major weights, those of global column c at W + c * K.
template <typename ActT>
__global__ void simple_kernel(const ActT* __restrict__ A, longlong3 sA, const int8_t* __restrict__ W,
                              int32_t* __restrict__ O, unsigned long long* stats, MatmulArgs r,
                              FaultTables t) {
  const int64_t total = r.G * r.M * r.N;
  GlobalCounter counter{stats, stats + r.W};
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = idx % r.N;
    const int64_t gm = idx / r.N;
    const int64_t g = gm / r.M, m = gm % r.M;
    const uint32_t row = uint32_t(r.row_offset + m), col = uint32_t(g * r.N + n);
    const OutputStream rs(r.seed, r.layer, row, col,
                          t.any ? screen_word(r.seed, r.layer, row, col) : 0u);
    O[idx] = systolic_output(Strided<ActT>{A + g * sA.x + m * sA.y, sA.z}, W + int64_t(col) * r.K, 1,
                             r.rows, t, r.protect, rs, counter);
  }
}

// Per-block counters in shared memory, flushed once per block: at heavy
// error rates one global atomic per event would serialize.
struct BlockCounter {
  unsigned long long* counts;  // [2][32]: injected, corrected
  __device__ void add(int b, bool was_corrected) {
    atomicAdd(counts + (was_corrected ? 32 : 0) + b, 1ull);
  }
};

// The fast path's patches: O holds the clean product. One thread per
// (group, quad of global rows, column): it computes the quad's screening
// block once and walks the events of its (up to) four outputs with
// pyvs::output_patch; only outputs with flips read A and W. Threads of a warp
// take consecutive columns.
template <typename ActT>
__global__ void patch_kernel(const ActT* __restrict__ A, longlong3 sA, const int8_t* __restrict__ W,
                             int32_t* __restrict__ O, unsigned long long* stats, MatmulArgs r,
                             FaultTables t, int64_t q0, int64_t quads) {
  __shared__ unsigned long long counts[64];
  for (int i = threadIdx.x; i < 64; i += blockDim.x) counts[i] = 0;
  __syncthreads();
  BlockCounter counter{counts};
  const int64_t total = r.G * quads * r.N;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = idx % r.N;
    const int64_t gq = idx / r.N;
    const int64_t g = gq / quads, quad = q0 + gq % quads;
    const uint32_t col = uint32_t(g * r.N + n);
    const Philox4 block = screen_block(r.seed, r.layer, uint32_t(4 * quad), col);
    // local rows of this quad: global rows 4 * quad .. + 3, clipped to the call
    const int64_t lo = 4 * quad - int64_t(r.row_offset), hi = lo + 4;
    const int64_t m0 = lo > 0 ? lo : 0, m1 = hi < r.M ? hi : r.M;
    for (int64_t m = m0; m < m1; ++m) {
      const uint32_t row = uint32_t(r.row_offset + m);
      const OutputStream rs(r.seed, r.layer, row, col, block_word(block, row & 3u));
      const uint32_t patch = output_patch(Strided<ActT>{A + g * sA.x + m * sA.y, sA.z},
                                          W + int64_t(col) * r.K, 1, r.rows, t, r.protect, rs, counter);
      if (patch) {
        const int64_t o = (g * r.M + m) * r.N + n;
        O[o] = int32_t(uint32_t(O[o]) + patch);
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 2 * r.W; i += blockDim.x) {
    const int row = i / r.W, b = i % r.W;
    const unsigned long long c = counts[row * 32 + b];
    if (c) atomicAdd(stats + row * r.W + b, c);
  }
}

constexpr int kThreads = 256;

int64_t grid_for(int64_t items) {
  return std::min<int64_t>((items + kThreads - 1) / kThreads, 1 << 20);
}

// Below this K the fused simple kernel beats a tensor-core GEMM plus
// patches (depthwise convs: K = 9). Not yet measured on a GPU. Several
// groups take one batched float32 GEMM (exact in K-chunks, clean_gemm.cpp)
// rather than one padded torch._int_mm launch per group.
constexpr Backend kCuda{/*min_fast_k=*/32, GemmMethod::kIntMM, GemmMethod::kFloat32};

std::tuple<at::Tensor, at::Tensor> systolic_matmul_cuda(
    const at::Tensor& a, const at::Tensor& w, const at::Tensor& p_bits, int64_t protect,
    int64_t seed, int64_t layer, int64_t row_offset, int64_t rows, c10::string_view impl) {
  TORCH_INTERNAL_ASSERT(a.device().is_cuda());
  const c10::cuda::CUDAGuard guard(a.device());
  const PreparedMatmul c =
      prepare_matmul(a, w, p_bits, protect, seed, layer, row_offset, rows, impl, kCuda);
  const MatmulArgs& r = c.r;
  if (r.G * r.M * r.N == 0 || (c.fast && !c.t.any)) return c.result();
  auto* S = reinterpret_cast<unsigned long long*>(c.stats.data_ptr<int64_t>());
  auto stream = at::cuda::getCurrentCUDAStream();
  // Quads of global rows covering [row_offset, row_offset + M).
  const int64_t q0 = int64_t(r.row_offset) >> 2;
  const int64_t quads = ((int64_t(r.row_offset) + r.M - 1) >> 2) - q0 + 1;
  const longlong3 sA{c.a3.stride(0), c.a3.stride(1), c.a3.stride(2)};
  PYVS_DISPATCH_ACTIVATIONS(c.a3.scalar_type(), "systolic_matmul_cuda", [&] {
    const scalar_t* A = c.a3.const_data_ptr<scalar_t>();
    const int8_t* W = c.w3.const_data_ptr<int8_t>();
    int32_t* O = c.out.data_ptr<int32_t>();
    if (c.fast) {
      patch_kernel<scalar_t><<<grid_for(r.G * quads * r.N), kThreads, 0, stream>>>(
          A, sA, W, O, S, r, c.t, q0, quads);
    } else {
      simple_kernel<scalar_t><<<grid_for(r.G * r.M * r.N), kThreads, 0, stream>>>(
          A, sA, W, O, S, r, c.t);
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
