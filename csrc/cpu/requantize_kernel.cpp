// CPU kernels of pyvs::quantize and pyvs::requantize (requantize.cpp): one
// pass over the data, in parallel, the element math in requantize.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../requantize.h"

namespace pyvs {
namespace {

// One pass over n floats. Every operand is local and every pointer
// __restrict__: the 8-bit stores could otherwise alias anything (char
// types may), and the loop would not vectorize.
template <typename T>
void quantize_range(const float* __restrict__ X, T* __restrict__ O, int64_t n, float inv, float z,
                    float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) O[i] = T(int32_t(quantize_value(X[i], inv, z, lo, hi)));
}

at::Tensor quantize_cpu(const at::Tensor& x, double scale, int64_t zero_point, bool unsigned_) {
  const QuantizeCall c = prepare_quantize(x, scale, zero_point, unsigned_);
  const float* X = c.src.const_data_ptr<float>();
  void* O = c.out.data_ptr();
  at::parallel_for(0, c.src.numel(), 1 << 14, [&](int64_t b, int64_t e) {
    if (unsigned_) {
      quantize_range<uint8_t>(X + b, static_cast<uint8_t*>(O) + b, e - b, c.inv, c.zero_point, c.lo, c.hi);
    } else {
      quantize_range<int8_t>(X + b, static_cast<int8_t*>(O) + b, e - b, c.inv, c.zero_point, c.lo, c.hi);
    }
  });
  return c.out;
}

// A row of C accumulators, each with its own channel (channels last)...
void requantize_row(const int32_t* __restrict__ A, const int32_t* __restrict__ OFF,
                    const float* __restrict__ MUL, float* __restrict__ O, int64_t C, float lo, float hi,
                    float so) {
  for (int64_t c = 0; c < C; ++c) O[c] = requantize_value(A[c], OFF[c], MUL[c], lo, hi, so);
}

// ...or all of one channel (channels first).
void requantize_row_one(const int32_t* __restrict__ A, int32_t off, float mul, float* __restrict__ O,
                        int64_t C, float lo, float hi, float so) {
  for (int64_t c = 0; c < C; ++c) O[c] = requantize_value(A[c], off, mul, lo, hi, so);
}

at::Tensor requantize_cpu(const at::Tensor& acc, const at::Tensor& offset, const at::Tensor& multiplier,
                          int64_t lo, int64_t hi, double out_scale, int64_t channel_dim) {
  const RequantizeCall c = prepare_requantize(acc, offset, multiplier, lo, hi, out_scale, channel_dim);
  const int32_t* A = c.acc.const_data_ptr<int32_t>();
  const int32_t* OFF = c.offset.const_data_ptr<int32_t>();
  const float* MUL = c.multiplier.const_data_ptr<float>();
  float* O = c.out.data_ptr<float>();
  const int64_t C = c.C;
  at::parallel_for(0, c.R, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      if (c.channels_last) {
        requantize_row(A + r * C, OFF, MUL, O + r * C, C, c.lo, c.hi, c.out_scale);
      } else {
        requantize_row_one(A + r * C, OFF[r], MUL[r], O + r * C, C, c.lo, c.hi, c.out_scale);
      }
    }
  });
  return c.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyvs, CPU, m) {
  m.impl("quantize", &quantize_cpu);
  m.impl("requantize", &requantize_cpu);
}

}  // namespace pyvs
