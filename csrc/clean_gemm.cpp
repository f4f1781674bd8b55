// The fast path's clean half: what systolic_matmul returns when no event
// happens, from the fastest exact integer GEMM the device has.
//
// Per output, sum over K-tiles of sign_extend_W(tile sum mod 2^W), wrapped
// to int32. With W = 32, or when no tile sum can leave the signed W-bit
// range, that is the plain product mod 2^32 and one GEMM gives it; otherwise
// (narrow accumulators, long tiles) one GEMM per tile, each sign-extended.
// Everything here is ATen ops, so the same code serves every device; only
// the GEMM differs (exact_mm).
#include <ATen/ATen.h>

#include "systolic_matmul.h"

namespace pyvs {

namespace {

// Largest |a * w| for the activation type: 255 * 128 (uint8), 128 * 128 (int8).
int64_t max_product(const at::Tensor& a) {
  return a.scalar_type() == at::kByte ? 255 * 128 : 128 * 128;
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// A contiguous tensor whose data starts on a 256-byte boundary: cuBLASLt,
// called by torch._int_mm without an explicit algorithm, assumes that
// alignment, and one group's slice of a [G, K, N] operand can start anywhere
// (g * K * N bytes in). A copy (CUDA's allocations are aligned) only then;
// the CPU's oneDNN has no such rule.
at::Tensor aligned(const at::Tensor& t) {
  constexpr uintptr_t kAlign = 256;
  if (!t.is_cuda() || reinterpret_cast<uintptr_t>(t.const_data_ptr()) % kAlign == 0) return t;
  return t.clone(at::MemoryFormat::Contiguous);
}

// Batched a [G, M, K] int8/uint8, w [G, K, N] int8 -> exact int32 [G, M, N]
// (mod 2^32) by float32 BLAS. Exact because every partial sum is an integer
// below 2^24 in magnitude: K is cut into chunks of at most
// (2^24 - 1) / max|a*w| steps (514 for uint8, 1023 for int8), whose sums are
// added in integers. Reduced-precision float32 matmul modes (TF32, bf16
// inputs) keep it exact too: 8-bit integers are exact in their inputs, and
// they accumulate in float32.
at::Tensor float32_mm(const at::Tensor& a, const at::Tensor& w) {
  const int64_t K = a.size(2);
  const int64_t chunk = ((int64_t(1) << 24) - 1) / max_product(a);
  if (K <= chunk) return at::bmm(a.to(at::kFloat), w.to(at::kFloat)).to(at::kInt);
  // Partial sums up to K * 2^15 < 2^41: int64, wrapped to int32 at the end.
  at::Tensor acc = at::zeros({a.size(0), a.size(1), w.size(2)}, a.options().dtype(at::kLong));
  for (int64_t k0 = 0; k0 < K; k0 += chunk) {
    const int64_t len = std::min(chunk, K - k0);
    acc += at::bmm(a.narrow(2, k0, len).to(at::kFloat), w.narrow(1, k0, len).to(at::kFloat))
               .to(at::kInt);
  }
  return acc.to(at::kInt);
}

// Whether this CPU's torch._int_mm (oneDNN's s8 x s8 GEMM) is exact. It is
// on CPUs with VNNI; without it oneDNN shifts a to uint8 and multiplies
// pairs into a saturating int16 (vpmaddubsw), so large products of one sign
// clip (seen with ONEDNN_MAX_CPU_ISA=AVX2 or AVX512_CORE). Probed once per
// process on operands that clip there; where it is inexact, the CPU takes
// the exact float32 GEMM instead.
bool cpu_int_mm_is_exact() {
  static const bool exact = [] {
    const int64_t M = 32, K = 64, N = 32;
    at::Tensor a = at::empty({M, K}, at::kChar), w = at::empty({K, N}, at::kChar);
    auto* A = a.data_ptr<int8_t>();
    auto* W = w.data_ptr<int8_t>();
    for (int64_t i = 0; i < M * K; ++i) A[i] = int8_t(i / K < 4 ? (i / K % 2 ? -128 : 127) : (i * 37 + 11) % 256 - 128);
    for (int64_t i = 0; i < K * N; ++i) W[i] = int8_t(i % N < 4 ? (i % N % 2 ? 127 : -128) : (i * 53 + 5) % 256 - 128);
    const auto [ap, wp] = int_mm_operands(a, w);
    const at::Tensor got = at::_int_mm(ap, wp);
    return at::equal(got.to(at::kLong), at::mm(a.to(at::kLong), w.to(at::kLong)));
  }();
  return exact;
}

// a [M, K] int8, w [K, N] int8 -> exact int32 [M, N] (mod 2^32) by
// torch._int_mm. A shape that cuBLASLt still refuses, or a CPU whose int8
// GEMM is inexact, falls back to the exact float32 GEMM on the same device:
// slower, same bits.
at::Tensor int_mm(const at::Tensor& a, const at::Tensor& w) {
  const int64_t M = a.size(0), N = w.size(1);
  if (a.is_cpu() && !cpu_int_mm_is_exact()) return float32_mm(a.unsqueeze(0), w.unsqueeze(0))[0];
  const auto [ap, wp] = int_mm_operands(a, w);
  try {
    return at::_int_mm(ap, wp).narrow(0, 0, M).narrow(1, 0, N);
  } catch (const c10::Error& e) {
    TORCH_WARN_ONCE("pyvs: torch._int_mm refused a ", ap.size(0), "x", ap.size(1), "x", wp.size(1),
                    " int8 GEMM on ", a.device(), "; computing it by exact float32 GEMM instead (",
                    e.what_without_backtrace(), ")");
    return float32_mm(a.unsqueeze(0), w.unsqueeze(0))[0];
  }
}

// One group: a [M, K] int8/uint8, w [K, N] int8 -> exact int32 [M, N].
at::Tensor exact_mm(const at::Tensor& a, const at::Tensor& w, GemmMethod method) {
  const int64_t M = a.size(0), K = a.size(1), N = w.size(1);
  if (M == 0 || N == 0) return at::empty({M, N}, a.options().dtype(at::kInt));
  if (K == 0) return at::zeros({M, N}, a.options().dtype(at::kInt));
  if (method == GemmMethod::kFloat32) return float32_mm(a.unsqueeze(0), w.unsqueeze(0))[0];
  if (a.scalar_type() == at::kChar) return int_mm(a, w);
  // uint8 activations: u = (u ^ 0x80 read as int8) + 128, so
  // a @ w = (a ^ 0x80) @ w + 128 * (column sums of w).
  const at::Tensor a8 = at::bitwise_xor(a.view(at::kChar), -128);
  const at::Tensor colsum = w.sum(0, /*keepdim=*/true, at::kInt);
  return int_mm(a8, w).add_(colsum, 128);
}

// Sign extension of the W-bit value of x (int64 tensor) to int64.
at::Tensor sign_extend_w(const at::Tensor& x, int W) {
  const int64_t half = int64_t(1) << (W - 1), mask = (int64_t(1) << W) - 1;
  return at::bitwise_and(x + half, mask) - half;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> int_mm_operands(const at::Tensor& a, const at::Tensor& w) {
  const int64_t M = a.size(0), K = a.size(1), N = w.size(1);
  const int64_t Mp = std::max<int64_t>(M, 17), Kp = round_up(std::max<int64_t>(K, 1), 8),
                Np = round_up(std::max<int64_t>(N, 1), 8);
  // Column-major [Kp, Np] = the transpose of a contiguous [Np, Kp]; a view
  // when w already is column-major, needs no padding and is aligned.
  if (Mp == M && Kp == K && Np == N) {
    const at::Tensor ac = a.contiguous(), wt = w.t().contiguous();
    return {aligned(ac), aligned(wt).t()};
  }
  at::Tensor ap = at::zeros({Mp, Kp}, a.options());
  at::Tensor wt = at::zeros({Np, Kp}, w.options());
  ap.narrow(0, 0, M).narrow(1, 0, K).copy_(a);
  wt.narrow(0, 0, N).narrow(1, 0, K).copy_(w.t());
  return {ap, wt.t()};
}

bool tiles_may_wrap(const at::Tensor& a, int64_t K, int W, int64_t rows) {
  if (W >= 32) return false;  // the int32 output wraps exactly like the tile
  const int64_t tile = std::min(rows, K);
  // |tile sum| <= tile * max|a*w| must stay inside [-2^(W-1), 2^(W-1) - 1].
  return tile * max_product(a) > (int64_t(1) << (W - 1)) - 1;
}

at::Tensor clean_systolic_gemm(const at::Tensor& a3, const at::Tensor& w3, int W,
                               int64_t rows, GemmMethod method) {
  const int64_t G = a3.size(0), M = a3.size(1), K = a3.size(2), N = w3.size(2);
  const bool wraps = tiles_may_wrap(a3, K, W, rows);
  if (!wraps && method == GemmMethod::kFloat32 && K > 0) return float32_mm(a3, w3);
  if (!wraps && G == 1) return exact_mm(a3[0], w3[0], method).contiguous().unsqueeze(0);
  at::Tensor out = at::empty({G, M, N}, a3.options().dtype(at::kInt));
  for (int64_t g = 0; g < G; ++g) {
    const at::Tensor ag = a3[g], wg = w3[g];
    if (!wraps) {
      out[g].copy_(exact_mm(ag, wg, method));
      continue;
    }
    at::Tensor acc = at::zeros({M, N}, a3.options().dtype(at::kLong));
    for (int64_t k0 = 0; k0 < K; k0 += rows) {
      const int64_t len = std::min(rows, K - k0);
      acc += sign_extend_w(exact_mm(ag.narrow(1, k0, len), wg.narrow(0, k0, len), method)
                               .to(at::kLong), W);
    }
    out[g].copy_(acc);  // int64 -> int32 wraps mod 2^32, as the output register does
  }
  return out;
}

}  // namespace pyvs
