// Host-side pieces shared by the backends: input validation and the fault
// tables. Kernels live in cpu/ and cuda/; the schema in ops.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <c10/util/string_view.h>

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

// ---- The fast path: exact clean GEMM + sparse event patches ----------------
// (clean_gemm.cpp; the patches are pyvs::output_patch, run by each backend)

// How the clean product is computed: float32 BLAS in K-chunks small enough
// to be exact, or torch._int_mm (int8 tensor cores on CUDA).
enum class GemmMethod { kFloat32, kIntMM };

// Whether a clean K-tile sum can leave the signed W-bit range, so that the
// clean result needs one GEMM per tile. a: the activations (for their type).
bool tiles_may_wrap(const at::Tensor& a, int64_t K, int W, int64_t rows);

// What systolic_matmul returns when no event happens: int32 [G, M, N] from
// a3 [G, M, K] int8/uint8 and w3 [G, K, N] int8 (same device), W-bit tiles
// of `rows` MACs.
at::Tensor clean_systolic_gemm(const at::Tensor& a3, const at::Tensor& w3, int W,
                               int64_t rows, GemmMethod method);

// Which path runs a call. impl: "simple" (one systolic_output per output),
// "fast" (clean_systolic_gemm + output_patch) or "auto": the fast path unless
// K is below min_fast_k (a GEMM is pointless at K = 9) or the unprotected
// error rate leaves at least half of the outputs to patch (then the patches
// redo the simple path's work). Both paths give identical results; this only
// decides the speed. Throws on an unknown impl.
bool use_fast_path(c10::string_view impl, const MatmulArgs& r,
                   const at::Tensor& p_bits, int64_t min_fast_k);

}  // namespace pyvs
