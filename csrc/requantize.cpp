// requantize.cpp -- schemas and argument checks of the int8 runtime's
// elementwise steps (one pass each, where PyTorch eager takes five):
//   quantize(x, scale, zero_point, uint8) -> 8-bit tensor, x's layout
//   requantize(acc [R, C] int32, offset, multiplier, lo, hi, out_scale,
//              channel_dim) -> float32 [R, C]
// Kernels: cpu/requantize_kernel.cpp, cuda/requantize_kernel.cu.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>

#include "requantize.h"

namespace pyvs {

QuantizeCall prepare_quantize(const at::Tensor& x, double scale, int64_t zero_point, bool unsigned_) {
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "quantize: x must be float32, got ", x.scalar_type());
  TORCH_CHECK_VALUE(std::isfinite(scale) && scale > 0, "quantize: scale must be positive, got ", scale);
  QuantizeCall c;
  // Elementwise: any dense layout is walked as it lies in memory.
  c.src = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  c.out = at::empty_like(c.src, c.src.options().dtype(unsigned_ ? at::kByte : at::kChar));
  c.inv = 1.0f / float(scale);
  c.zero_point = float(zero_point);
  c.lo = unsigned_ ? 0.f : -128.f;
  c.hi = unsigned_ ? 255.f : 127.f;
  return c;
}

RequantizeCall prepare_requantize(const at::Tensor& acc, const at::Tensor& offset,
                                  const at::Tensor& multiplier, int64_t lo, int64_t hi, double out_scale,
                                  int64_t channel_dim) {
  TORCH_CHECK_VALUE(acc.dim() == 2 && acc.scalar_type() == at::kInt && (channel_dim == 0 || channel_dim == 1),
                    "requantize: acc must be int32 [R, C] and channel_dim 0 or 1");
  const int64_t channels = acc.size(channel_dim);
  TORCH_CHECK_VALUE(offset.numel() == channels && multiplier.numel() == channels &&
                        offset.scalar_type() == at::kInt && multiplier.scalar_type() == at::kFloat &&
                        offset.device() == acc.device() && multiplier.device() == acc.device(),
                    "requantize: offset (int32) and multiplier (float32) need one entry per channel, "
                    "on acc's device");
  // The values are clamped to +-2^22 before rounding (requantize.h): exact
  // only while the output range lies inside that.
  TORCH_CHECK_VALUE(lo <= hi && lo >= -(int64_t(1) << 22) && hi <= (int64_t(1) << 22),
                    "requantize: the output range must satisfy -2^22 <= lo <= hi <= 2^22, got lo=", lo,
                    " hi=", hi);
  TORCH_CHECK_VALUE(std::isfinite(out_scale) && out_scale > 0,
                    "requantize: out_scale must be a positive number, got ", out_scale);
  RequantizeCall c;
  c.acc = acc.contiguous();
  c.offset = offset.contiguous();
  c.multiplier = multiplier.contiguous();
  c.R = acc.size(0);
  c.C = acc.size(1);
  c.out = at::empty({c.R, c.C}, acc.options().dtype(at::kFloat));
  c.channels_last = channel_dim == 1;
  c.lo = float(lo);
  c.hi = float(hi);
  c.out_scale = float(out_scale);
  return c;
}

}  // namespace pyvs

TORCH_LIBRARY_FRAGMENT(pyvs, m) {
  m.def("quantize(Tensor x, float scale, int zero_point, bool unsigned_) -> Tensor");
  m.def("requantize(Tensor acc, Tensor offset, Tensor multiplier, int lo, int hi, float out_scale, "
        "int channel_dim) -> Tensor");
}
