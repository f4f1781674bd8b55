// requantize.h -- the int8 runtime's two roundings, one element at a time,
// shared by the CPU and CUDA kernels of pyvs::quantize and
// pyvs::requantize (and defined in plain PyTorch by pyvs/reference.py).
// float32 throughout, as the int8 runtimes compute scales; rintf rounds half
// to even, as torch.round does; no fused multiply-add (-ffp-contract=off).
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PYVS_QHD __host__ __device__ __forceinline__
#else
#define PYVS_QHD inline
#endif

namespace pyvs {

PYVS_QHD float clamp_to(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Magnitudes at or above this are clamped before rounding: the results are
// clamped to 8-bit grids anyway, far inside it.
constexpr float kBig = 4194304.0f;  // 2^22

// x (|x| <= 2^22) rounded to the nearest integer, ties to even, as
// torch.round. On the host by adding and removing 1.5 * 2^23, which leaves no
// fraction bits and is exact in that range; x86-64's baseline has no
// rounding instruction, and a libm call per element would not vectorize.
PYVS_QHD float round_half_even(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  return (x + kShift) - kShift;
#endif
}

// clamp(round(x * inv_scale) + zero_point, qmin, qmax), to be stored as an
// 8-bit integer.
PYVS_QHD float quantize_value(float x, float inv_scale, float zero_point, float qmin, float qmax) {
  return clamp_to(round_half_even(clamp_to(x * inv_scale, -kBig, kBig)) + zero_point, qmin, qmax);
}

// An int32 accumulator plus its channel's offset (wrapping like the
// register), times the channel's multiplier, rounded, clamped to the output
// grid minus its zero point, times the output scale: the float value of the
// next layer's input.
PYVS_QHD float requantize_value(int32_t acc, int32_t offset, float multiplier, float lo, float hi,
                                float out_scale) {
  const float y = float(int32_t(uint32_t(acc) + uint32_t(offset))) * multiplier;
  return clamp_to(round_half_even(clamp_to(y, -kBig, kBig)), lo, hi) * out_scale;
}

// ---- One call, checked, with its output allocated (requantize.cpp) -------

struct QuantizeCall {
  at::Tensor src;        // x, float32, dense (any order of dimensions)
  at::Tensor out;        // uint8 or int8, src's layout
  float inv, zero_point, lo, hi;
};
QuantizeCall prepare_quantize(const at::Tensor& x, double scale, int64_t zero_point, bool unsigned_);

struct RequantizeCall {
  at::Tensor acc, offset, multiplier;  // contiguous
  at::Tensor out;                      // float32 [R, C]
  int64_t R, C;
  bool channels_last;                  // the channel is dim 1 (else dim 0)
  float lo, hi, out_scale;
};
RequantizeCall prepare_requantize(const at::Tensor& acc, const at::Tensor& offset,
                                  const at::Tensor& multiplier, int64_t lo, int64_t hi, double out_scale,
                                  int64_t channel_dim);

}  // namespace pyvs
