// CUDA kernel of pyvs::systolic_matmul: one thread per output, running the
// same pyvs::systolic_output as the CPU kernel, hence the same bits. Threads
// of a warp take consecutive columns, so their weight loads are coalesced and
// their activation loads are broadcasts. Correct first; issue "full speed"
// replaces it on the hot path with a clean GEMM plus sparse event patches.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

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
    const OutputStream rs(r.seed, r.layer, uint32_t(r.row_offset + m),
                          uint32_t(g * r.N + n));
    O[idx] = systolic_output(A + gm * r.K, Wm + g * r.K * r.N + n, r.N, r.rows,
                             t, r.protect, rs, counter);
  }
}

std::tuple<at::Tensor, at::Tensor> systolic_matmul_cuda(
    const at::Tensor& a, const at::Tensor& w, const at::Tensor& p_bits,
    int64_t protect, int64_t seed, int64_t layer, int64_t row_offset,
    int64_t rows) {
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
  at::Tensor out = r.batched ? at::empty({r.G, r.M, r.N}, a.options().dtype(at::kInt))
                             : at::empty({r.M, r.N}, a.options().dtype(at::kInt));
  at::Tensor stats = at::zeros({2, r.W}, a.options().dtype(at::kLong));
  const int64_t total = r.G * r.M * r.N;
  if (total > 0) {
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 1 << 20);
    auto stream = at::cuda::getCurrentCUDAStream();
    auto* S = reinterpret_cast<unsigned long long*>(stats.data_ptr<int64_t>());
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
  return {out, stats};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyvs, CUDA, m) {
  m.impl("systolic_matmul", &systolic_matmul_cuda);
}

}  // namespace pyvs
