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
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "quantize: x must be float32, got ", x.scalar_type());
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor src = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  at::Tensor out = at::empty_like(src, src.options().dtype(unsigned_ ? at::kByte : at::kChar));
  const int64_t n = src.numel();
  if (n == 0) return out;
  const float inv = 1.0f / float(scale), z = float(zero_point);
  auto stream = at::cuda::getCurrentCUDAStream();
  if (unsigned_) {
    quantize_kernel<uint8_t><<<blocks_for(n), kThreads, 0, stream>>>(
        src.const_data_ptr<float>(), out.data_ptr<uint8_t>(), n, inv, z, 0.f, 255.f);
  } else {
    quantize_kernel<int8_t><<<blocks_for(n), kThreads, 0, stream>>>(
        src.const_data_ptr<float>(), out.data_ptr<int8_t>(), n, inv, z, -128.f, 127.f);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor requantize_cuda(const at::Tensor& acc, const at::Tensor& offset, const at::Tensor& multiplier,
                           int64_t lo, int64_t hi, double out_scale, int64_t channel_dim) {
  TORCH_CHECK_VALUE(acc.dim() == 2 && acc.scalar_type() == at::kInt && (channel_dim == 0 || channel_dim == 1),
                    "requantize: acc must be int32 [R, C] and channel_dim 0 or 1");
  const c10::cuda::CUDAGuard guard(acc.device());
  const int64_t R = acc.size(0), C = acc.size(1), channels = acc.size(channel_dim);
  TORCH_CHECK_VALUE(offset.numel() == channels && multiplier.numel() == channels &&
                        offset.scalar_type() == at::kInt && multiplier.scalar_type() == at::kFloat,
                    "requantize: offset (int32) and multiplier (float32) need one entry per channel");
  const at::Tensor a = acc.contiguous(), off = offset.contiguous(), mul = multiplier.contiguous();
  at::Tensor out = at::empty({R, C}, acc.options().dtype(at::kFloat));
  if (R * C == 0) return out;
  requantize_kernel<<<blocks_for(R * C), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      a.const_data_ptr<int32_t>(), off.const_data_ptr<int32_t>(), mul.const_data_ptr<float>(),
      out.data_ptr<float>(), R, C, channel_dim == 1, float(lo), float(hi), float(out_scale));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyvs, CUDA, m) {
  m.impl("quantize", &quantize_cuda);
  m.impl("requantize", &requantize_cuda);
}

}  // namespace pyvs
