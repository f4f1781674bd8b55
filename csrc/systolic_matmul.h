// systolic_matmul.h -- what the backends of pyvs::systolic_matmul share:
// the checked call (prepare_matmul: arguments, fault tables, path, clean
// product) and the fast path's exact clean GEMM. The fault law itself is
// fault_model.h; the schema and checks are systolic_matmul.cpp; the clean
// GEMM is clean_gemm.cpp; the kernels are cpu/ and cuda/systolic_matmul_kernel.*
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

#include "fault_model.h"

namespace pyvs {

// The op's sizes and scalars, checked. Plain data: kernels take it by value.
struct MatmulArgs {
  int64_t G, M, K, N;  // groups, rows, reduction length, columns per group
  int W;               // accumulator width, bits
  uint32_t protect;
  bool drop;           // TE-Drop: a detected error drops the MAC's update (fault_model.h)
  uint64_t seed;
  uint32_t layer;
  uint32_t row_offset;
  int64_t rows;        // systolic array height: MACs per K-tile
  bool batched;        // inputs were [G, M, K] / [G, K, N]
};

// How the clean product is computed: float32 BLAS in K-chunks small enough
// to be exact, or torch._int_mm (cuBLASLt's int8 tensor cores on CUDA).
enum class GemmMethod { kFloat32, kIntMM };

// What differs between backends before their kernels run.
struct Backend {
  int64_t min_fast_k;    // below this K the simple kernel beats GEMM + patches
  GemmMethod gemm;       // the clean GEMM of one group
  GemmMethod groups;     // the clean GEMM of several groups (G > 1)
  // The clean product of one column per group (depthwise convs: N = 1), for
  // any K, computed directly; null: the simple kernel takes small K.
  at::Tensor (*depthwise)(const at::Tensor& a3, const at::Tensor& w3, int W, int64_t rows) = nullptr;
  // The simple kernel reads activations with any strides (else they are
  // copied into rows first), and the output follows a's group order: with
  // one column per group and the groups innermost in a's memory (a depthwise
  // conv's channels-last taps), out is [G, M, 1] with strides (1, G, 1), so
  // that threads walking the groups load and store coalesced.
  bool strided_simple = false;
};

// One call, checked and ready for a backend's kernels.
struct PreparedMatmul {
  MatmulArgs r;
  at::Tensor a3;      // [G, M, K] int8/uint8, the caller's strides (a layer's im2col
                      // view is not copied); kernels read it through acts()
  at::Tensor w3;      // [G, K, N] int8, column-major: w3[g][k][n] at g*K*N + n*K + k
  at::Tensor tables;  // packed fault tables (make_fault_tables), on a's device
  FaultTables t;      // views into `tables`
  bool fast;          // true: `out` holds the clean product, to be patched;
                      // false: `out` is uninitialised, for the simple kernel
  bool groups_inner;  // out is groups-innermost (Backend::strided_simple)
  at::Tensor out;     // int32 [G, M, N], contiguous or groups-innermost
  at::Tensor stats;   // int64 [2, W] zeros: injected, corrected per bit

  // Weights of global column g * N + n: K values, stride 1.
  const int8_t* weights(int64_t g, int64_t n) const {
    return w3.const_data_ptr<int8_t>() + (g * r.N + n) * r.K;
  }
  // Activations of row m of group g: K values, a3.stride(2) apart.
  template <typename ActT>
  Strided<ActT> acts(int64_t g, int64_t m) const {
    return {a3.const_data_ptr<ActT>() + g * a3.stride(0) + m * a3.stride(1), a3.stride(2)};
  }
  // (out in the caller's shape, stats).
  std::tuple<at::Tensor, at::Tensor> result() const;
};

// Checks every argument (a c10::Error names the argument, what was expected
// and what was given), reads p_bits once, builds the fault tables on a's
// device (with patterns and joint, conditioned injection's), picks the path (impl: "auto", "fast" or "simple"; see
// use_fast_path in systolic_matmul.cpp) and, on the fast path, computes the
// clean product: by backend.depthwise for one column per group (N = 1) where
// the backend has one, else by clean_systolic_gemm.
PreparedMatmul prepare_matmul(const at::Tensor& a, const at::Tensor& w, const at::Tensor& p_bits,
                              int64_t protect, int64_t seed, int64_t layer, int64_t row_offset,
                              int64_t rows, c10::string_view impl, bool drop,
                              const std::optional<at::Tensor>& patterns, const std::optional<at::Tensor>& joint,
                              const Backend& backend);

// ---- The fast path's clean GEMM (clean_gemm.cpp) ---------------------------

// Whether a clean K-tile sum can leave the signed W-bit range, so that the
// clean result needs one GEMM per tile. a: the activations (for their type).
bool tiles_may_wrap(const at::Tensor& a, int64_t K, int W, int64_t rows);

// What systolic_matmul returns when no event happens: int32 [G, M, N] from
// a3 [G, M, K] int8/uint8 and w3 [G, K, N] int8 (same device, any strides),
// W-bit tiles of `rows` MACs.
at::Tensor clean_systolic_gemm(const at::Tensor& a3, const at::Tensor& w3, int W,
                               int64_t rows, GemmMethod method);

// The operands torch._int_mm receives for a [M, K] int8 times w [K, N]
// int8: zero-padded to cuBLASLt's shape rules (M > 16; K, N multiples of 8)
// and w column-major, the layout cuBLASLt's int8 kernels want (row-major
// weights are refused for some shapes and run 6-8x slower on the rest).
std::tuple<at::Tensor, at::Tensor> int_mm_operands(const at::Tensor& a, const at::Tensor& w);

}  // namespace pyvs

// The activation types of the op: uint8 (quint8 convention) and int8; the
// body sees them as scalar_t.
#define PYVS_DISPATCH_ACTIVATIONS(TYPE, NAME, ...)        \
  AT_DISPATCH_SWITCH(TYPE, NAME,                          \
                     AT_DISPATCH_CASE(at::kByte, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kChar, __VA_ARGS__))
