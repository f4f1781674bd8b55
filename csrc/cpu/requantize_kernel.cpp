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
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "quantize: x must be float32, got ", x.scalar_type());
  // Elementwise: any dense layout is walked as it lies in memory.
  const at::Tensor src = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  at::Tensor out = at::empty_like(src, src.options().dtype(unsigned_ ? at::kByte : at::kChar));
  const float inv = 1.0f / float(scale), z = float(zero_point);
  const float* X = src.const_data_ptr<float>();
  void* O = out.data_ptr();
  at::parallel_for(0, src.numel(), 1 << 14, [&](int64_t b, int64_t e) {
    if (unsigned_) {
      quantize_range<uint8_t>(X + b, static_cast<uint8_t*>(O) + b, e - b, inv, z, 0.f, 255.f);
    } else {
      quantize_range<int8_t>(X + b, static_cast<int8_t*>(O) + b, e - b, inv, z, -128.f, 127.f);
    }
  });
  return out;
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
  TORCH_CHECK_VALUE(acc.dim() == 2 && acc.scalar_type() == at::kInt && (channel_dim == 0 || channel_dim == 1),
                    "requantize: acc must be int32 [R, C] and channel_dim 0 or 1");
  const int64_t R = acc.size(0), C = acc.size(1), channels = acc.size(channel_dim);
  TORCH_CHECK_VALUE(offset.numel() == channels && multiplier.numel() == channels &&
                        offset.scalar_type() == at::kInt && multiplier.scalar_type() == at::kFloat,
                    "requantize: offset (int32) and multiplier (float32) need one entry per channel");
  const at::Tensor a = acc.contiguous(), off = offset.contiguous(), mul = multiplier.contiguous();
  at::Tensor out = at::empty({R, C}, acc.options().dtype(at::kFloat));
  const int32_t* A = a.const_data_ptr<int32_t>();
  const int32_t* OFF = off.const_data_ptr<int32_t>();
  const float* MUL = mul.const_data_ptr<float>();
  float* O = out.data_ptr<float>();
  const float flo = float(lo), fhi = float(hi), so = float(out_scale);
  at::parallel_for(0, R, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      if (channel_dim == 1) {
        requantize_row(A + r * C, OFF, MUL, O + r * C, C, flo, fhi, so);
      } else {
        requantize_row_one(A + r * C, OFF[r], MUL[r], O + r * C, C, flo, fhi, so);
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyvs, CPU, m) {
  m.impl("quantize", &quantize_cpu);
  m.impl("requantize", &requantize_cpu);
}

}  // namespace pyvs
