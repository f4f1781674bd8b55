// Host-side pieces shared by the backends: input validation and the fault
// tables. Kernels live in cpu/ and cuda/; the schema in ops.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include "pyvs.h"

namespace pyvs {

// Everything a backend needs about one call, validated.
struct MatmulArgs {
  int64_t G, M, K, N;  // groups, rows, reduction length, columns per group
  int W;               // accumulator width, bits
  uint32_t protect;
  uint64_t seed;
  uint32_t layer;
  uint32_t row_offset;
  int64_t rows;
  bool batched;  // inputs were [G, M, K] / [G, K, N]
};

// Checks every argument; throws a c10::Error naming the argument, what was
// expected and what was given.
MatmulArgs check_matmul_args(const at::Tensor& a, const at::Tensor& w,
                             const at::Tensor& p_bits, int64_t protect,
                             int64_t seed, int64_t layer, int64_t row_offset,
                             int64_t rows);

// The tables of pyvs.h, packed into one CPU int64 tensor of length
// (K + 1) + W + W * W: gap | first | next. Also reports whether any p > 0.
at::Tensor make_fault_tables(const at::Tensor& p_bits, int64_t K, bool* any);

// Views into a packed table tensor (CPU or device memory).
FaultTables view_fault_tables(const at::Tensor& packed, int W, int64_t K,
                              bool any);

}  // namespace pyvs
