// CUDA kernels of pyvs::systolic_matmul. The simple path: one thread per
// output, running the same pyvs::systolic_output as the CPU kernel, hence the
// same bits; threads of a warp take consecutive columns, so their weight
// loads are coalesced and their activation loads are broadcasts. The fast
// path: the clean product from torch._int_mm (cuBLASLt int8 tensor cores,
// clean_gemm.cpp), then one thread per output adding pyvs::output_patch.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "../ops.h"

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

template <typename ActT>
__global__ void systolic_matmul_kernel(const ActT* __restrict__ A,
                                       const int8_t* __restrict__ Wm,
                                       int32_t* __restrict__ O,
                                       unsigned long long* stats, MatmulArgs r,
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
    O[idx] = systolic_output(A + gm * r.K, Wm + g * r.K * r.N + n, r.N, r.rows,
                             t, r.protect, rs, counter);
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
__global__ void patch_kernel(const ActT* __restrict__ A,
                             const int8_t* __restrict__ Wm,
                             int32_t* __restrict__ O,
                             unsigned long long* stats, MatmulArgs r,
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
      const uint32_t patch = output_patch(A + (g * r.M + m) * r.K, Wm + g * r.K * r.N + n,
                                          r.N, r.rows, t, r.protect, rs, counter);
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

// Below this K the fused simple kernel beats a tensor-core GEMM plus
// patches (depthwise convs: K = 9). Not yet measured on a GPU.
constexpr int64_t kMinFastK = 32;

std::tuple<at::Tensor, at::Tensor> systolic_matmul_cuda(
    const at::Tensor& a, const at::Tensor& w, const at::Tensor& p_bits,
    int64_t protect, int64_t seed, int64_t layer, int64_t row_offset,
    int64_t rows, c10::string_view impl) {
  const MatmulArgs r =
      check_matmul_args(a, w, p_bits, protect, seed, layer, row_offset, rows);
  TORCH_INTERNAL_ASSERT(a.device().is_cuda());
  const c10::cuda::CUDAGuard guard(a.device());
  const at::Tensor a3 = a.reshape({r.G, r.M, r.K}).contiguous();
  const at::Tensor w3 = w.reshape({r.G, r.K, r.N}).contiguous();
  bool any = false;
  const at::Tensor packed =
      make_fault_tables(p_bits, r.K, &any).to(a.device(), /*non_blocking=*/false);
  const FaultTables t = view_fault_tables(packed, r.W, r.K, any);
  const std::vector<int64_t> shape =
      r.batched ? std::vector<int64_t>{r.G, r.M, r.N} : std::vector<int64_t>{r.M, r.N};
  at::Tensor stats = at::zeros({2, r.W}, a.options().dtype(at::kLong));
  auto* S = reinterpret_cast<unsigned long long*>(stats.data_ptr<int64_t>());
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t total = r.G * r.M * r.N;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 1 << 20);
  at::Tensor out;
  if (use_fast_path(impl, r, p_bits, kMinFastK)) {
    out = clean_systolic_gemm(a3, w3, r.W, r.rows, GemmMethod::kIntMM).view(shape);
    if (any && total > 0) {
      // Quads of global rows covering [row_offset, row_offset + M).
      const int64_t q0 = int64_t(r.row_offset) >> 2;
      const int64_t quads = ((int64_t(r.row_offset) + r.M - 1) >> 2) - q0 + 1;
      const int64_t items = r.G * quads * r.N;
      const int64_t pblocks = std::min<int64_t>((items + threads - 1) / threads, 1 << 20);
      if (a.scalar_type() == at::kByte) {
        patch_kernel<uint8_t><<<pblocks, threads, 0, stream>>>(
            a3.const_data_ptr<uint8_t>(), w3.const_data_ptr<int8_t>(),
            out.data_ptr<int32_t>(), S, r, t, q0, quads);
      } else {
        patch_kernel<int8_t><<<pblocks, threads, 0, stream>>>(
            a3.const_data_ptr<int8_t>(), w3.const_data_ptr<int8_t>(),
            out.data_ptr<int32_t>(), S, r, t, q0, quads);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  } else {
    out = at::empty(shape, a.options().dtype(at::kInt));
    if (total > 0) {
      if (a.scalar_type() == at::kByte) {
        systolic_matmul_kernel<uint8_t><<<blocks, threads, 0, stream>>>(
            a3.const_data_ptr<uint8_t>(), w3.const_data_ptr<int8_t>(),
            out.data_ptr<int32_t>(), S, r, t);
      } else {
        systolic_matmul_kernel<int8_t><<<blocks, threads, 0, stream>>>(
            a3.const_data_ptr<int8_t>(), w3.const_data_ptr<int8_t>(),
            out.data_ptr<int32_t>(), S, r, t);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
  return {out, stats};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyvs, CUDA, m) {
  m.impl("systolic_matmul", &systolic_matmul_cuda);
}

}  // namespace pyvs
