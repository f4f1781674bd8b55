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

#include "ops.h"

namespace pyvs {

namespace {

// Largest |a * w| for the activation type: 255 * 128 (uint8), 128 * 128 (int8).
int64_t max_product(const at::Tensor& a) {
  return a.scalar_type() == at::kByte ? 255 * 128 : 128 * 128;
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// a [M, K] int8, w [K, N] int8 -> exact int32 [M, N] (mod 2^32) by
// torch._int_mm (cuBLASLt's int8 tensor-core GEMM on CUDA). cuBLASLt wants
// M > 16 and K, N multiples of 8: zero padding where needed, which adds
// nothing to the products.
at::Tensor int_mm_padded(const at::Tensor& a, const at::Tensor& w) {
  const int64_t M = a.size(0), K = a.size(1), N = w.size(1);
  const int64_t Mp = std::max<int64_t>(M, 17), Kp = round_up(std::max<int64_t>(K, 1), 8),
                Np = round_up(std::max<int64_t>(N, 1), 8);
  if (Mp == M && Kp == K && Np == N) return at::_int_mm(a, w);
  at::Tensor ap = at::zeros({Mp, Kp}, a.options());
  at::Tensor wp = at::zeros({Kp, Np}, w.options());
  ap.narrow(0, 0, M).narrow(1, 0, K).copy_(a);
  wp.narrow(0, 0, K).narrow(1, 0, N).copy_(w);
  return at::_int_mm(ap, wp).narrow(0, 0, M).narrow(1, 0, N);
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

// One group: a [M, K] int8/uint8, w [K, N] int8 -> exact int32 [M, N].
at::Tensor exact_mm(const at::Tensor& a, const at::Tensor& w, GemmMethod method) {
  const int64_t M = a.size(0), K = a.size(1), N = w.size(1);
  if (M == 0 || N == 0) return at::empty({M, N}, a.options().dtype(at::kInt));
  if (K == 0) return at::zeros({M, N}, a.options().dtype(at::kInt));
  if (method == GemmMethod::kFloat32) return float32_mm(a.unsqueeze(0), w.unsqueeze(0))[0];
  if (a.scalar_type() == at::kChar) return int_mm_padded(a.contiguous(), w.contiguous());
  // uint8 activations: u = (u ^ 0x80 read as int8) + 128, so
  // a @ w = (a ^ 0x80) @ w + 128 * (column sums of w).
  const at::Tensor a8 = at::bitwise_xor(a.view(at::kChar), -128);
  const at::Tensor colsum = w.sum(0, /*keepdim=*/true, at::kInt);
  return int_mm_padded(a8.contiguous(), w.contiguous()).add_(colsum, 128);
}

// Sign extension of the W-bit value of x (int64 tensor) to int64.
at::Tensor sign_extend_w(const at::Tensor& x, int W) {
  const int64_t half = int64_t(1) << (W - 1), mask = (int64_t(1) << W) - 1;
  return at::bitwise_and(x + half, mask) - half;
}

}  // namespace

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
