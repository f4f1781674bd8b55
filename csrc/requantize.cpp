// requantize.cpp -- schemas and argument checks of the int8 runtime's
// elementwise steps (one pass each, where PyTorch eager takes five):
//   quantize(x, scale, zero_point, uint8) -> 8-bit tensor, x's layout
//   requantize(acc [R, C] int32, offset, multiplier, lo, hi, out_scale,
//              channel_dim) -> float32 [R, C]
// Kernels: cpu/requantize_kernel.cpp, cuda/requantize_kernel.cu.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "requantize.h"

TORCH_LIBRARY_FRAGMENT(pyvs, m) {
  m.def("quantize(Tensor x, float scale, int zero_point, bool unsigned_) -> Tensor");
  m.def("requantize(Tensor acc, Tensor offset, Tensor multiplier, int lo, int hi, float out_scale, "
        "int channel_dim) -> Tensor");
}
