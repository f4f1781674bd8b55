// CUDA kernels of pyvs::quantize and pyvs::requantize (requantize.cpp): one
// thread per element, the element math in requantize.h.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../requantize.h"

namespace pyvs {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) { return std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20); }

template <typename T>
__global__ void quantize_kernel(const float* __restrict__ X, T* __restrict__ O, int64_t n, float inv,
                                float z, float lo, float hi) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    O[i] = T(quantize_value(X[i], inv, z, lo, hi));
}

__global__ void requantize_kernel(const int32_t* __restrict__ A, const int32_t* __restrict__ OFF,
                                  const float* __restrict__ MUL, float* __restrict__ O, int64_t R,
                                  int64_t C, bool channels_last, float lo, float hi, float so) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < R * C; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ch = channels_last ? i % C : i / C;
    O[i] = requantize_value(A[i], OFF[ch], MUL[ch], lo, hi, so);
  }
}

at::Tensor quantize_cuda(const at::Tensor& x, double scale, int64_t zero_point, bool unsigned_) {
  const c10::cuda::CUDAGuard guard(x.device());
  const QuantizeCall c = prepare_quantize(x, scale, zero_point, unsigned_);
  const int64_t n = c.src.numel();
  if (n == 0) return c.out;
  auto stream = at::cuda::getCurrentCUDAStream();
  if (unsigned_) {
    quantize_kernel<uint8_t><<<blocks_for(n), kThreads, 0, stream>>>(
        c.src.const_data_ptr<float>(), c.out.data_ptr<uint8_t>(), n, c.inv, c.zero_point, c.lo, c.hi);
  } else {
    quantize_kernel<int8_t><<<blocks_for(n), kThreads, 0, stream>>>(
        c.src.const_data_ptr<float>(), c.out.data_ptr<int8_t>(), n, c.inv, c.zero_point, c.lo, c.hi);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return c.out;
}

at::Tensor requantize_cuda(const at::Tensor& acc, const at::Tensor& offset, const at::Tensor& multiplier,
                           int64_t lo, int64_t hi, double out_scale, int64_t channel_dim) {
  const c10::cuda::CUDAGuard guard(acc.device());
  const RequantizeCall c = prepare_requantize(acc, offset, multiplier, lo, hi, out_scale, channel_dim);
  if (c.R * c.C == 0) return c.out;
  requantize_kernel<<<blocks_for(c.R * c.C), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      c.acc.const_data_ptr<int32_t>(), c.offset.const_data_ptr<int32_t>(), c.multiplier.const_data_ptr<float>(),
      c.out.data_ptr<float>(), c.R, c.C, c.channels_last, c.lo, c.hi, c.out_scale);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return c.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyvs, CUDA, m) {
  m.impl("quantize", &quantize_cuda);
  m.impl("requantize", &requantize_cuda);
}

}  // namespace pyvs
