// The schema of every pyvs op, the validation shared by the backends, and the
// host-side fault tables. Kernels: cpu/systolic_matmul_kernel.cpp and
// cuda/systolic_matmul_kernel.cu.
#include <Python.h>

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <sstream>

#include "ops.h"

namespace pyvs {

namespace {

constexpr int64_t kMaxU32 = int64_t(1) << 32;

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

}  // namespace

MatmulArgs check_matmul_args(const at::Tensor& a, const at::Tensor& w,
                             const at::Tensor& p_bits, int64_t protect,
                             int64_t seed, int64_t layer, int64_t row_offset,
                             int64_t rows) {
  TORCH_CHECK(a.scalar_type() == at::kChar || a.scalar_type() == at::kByte,
              "systolic_matmul: a must be int8 or uint8, got ", a.scalar_type());
  TORCH_CHECK(w.scalar_type() == at::kChar,
              "systolic_matmul: w must be int8, got ", w.scalar_type());
  TORCH_CHECK(a.dim() == 2 || a.dim() == 3,
              "systolic_matmul: a must be [M, K] or [G, M, K], got shape ",
              shape_str(a));
  TORCH_CHECK(w.dim() == a.dim(),
              "systolic_matmul: w must have the rank of a (", a.dim(),
              "), i.e. [K, N] or [G, K, N], got shape ", shape_str(w));
  TORCH_CHECK(a.device() == w.device(),
              "systolic_matmul: a and w must be on the same device, got a on ",
              a.device(), " and w on ", w.device());
  TORCH_CHECK(p_bits.device().is_cpu() || p_bits.device() == a.device(),
              "systolic_matmul: p_bits must be on the CPU or on a's device (",
              a.device(), "), got ", p_bits.device());
  const bool batched = a.dim() == 3;
  MatmulArgs r;
  r.batched = batched;
  r.G = batched ? a.size(0) : 1;
  r.M = a.size(-2);
  r.K = a.size(-1);
  r.N = w.size(-1);
  TORCH_CHECK(w.size(-2) == r.K,
              "systolic_matmul: K mismatch: a is ", shape_str(a), " and w is ",
              shape_str(w), " (a's last dimension must equal w's second-to-last)");
  TORCH_CHECK(!batched || w.size(0) == r.G,
              "systolic_matmul: group count mismatch: a has ", r.G,
              " groups and w has ", w.size(0));
  TORCH_CHECK(p_bits.scalar_type() == at::kDouble,
              "systolic_matmul: p_bits must be float64, got ", p_bits.scalar_type());
  TORCH_CHECK(p_bits.dim() == 1,
              "systolic_matmul: p_bits must be 1-D [W], got shape ", shape_str(p_bits));
  const int64_t W = p_bits.size(0);
  TORCH_CHECK(W >= 8 && W <= 32,
              "systolic_matmul: p_bits has length ", W,
              "; the accumulator width W must be between 8 and 32 bits");
  r.W = int(W);
  const at::Tensor p = p_bits.to(at::kCPU).contiguous();
  const double* pp = p.data_ptr<double>();
  for (int64_t b = 0; b < W; ++b) {
    TORCH_CHECK(std::isfinite(pp[b]) && pp[b] >= 0.0 && pp[b] <= 1.0,
                "systolic_matmul: p_bits[", b, "] = ", pp[b],
                " is not a probability in [0, 1]");
  }
  TORCH_CHECK(protect >= 0 && protect < (int64_t(1) << W),
              "systolic_matmul: protect mask 0x", std::hex, protect, std::dec,
              " has bits outside the ", W, "-bit accumulator (allowed: 0 to 2^",
              W, " - 1)");
  TORCH_CHECK(rows >= 1, "systolic_matmul: rows (systolic array height) must be >= 1, got ", rows);
  TORCH_CHECK(layer >= 0 && layer < kMaxU32,
              "systolic_matmul: layer (stream id) must be in [0, 2^32), got ", layer);
  TORCH_CHECK(row_offset >= 0 && row_offset + r.M <= kMaxU32,
              "systolic_matmul: row_offset + M must be in [0, 2^32], got row_offset=",
              row_offset, " M=", r.M);
  TORCH_CHECK(r.G * r.N <= kMaxU32,
              "systolic_matmul: G * N (global columns) must be <= 2^32, got ", r.G * r.N);
  // An output draws at most 1 + K * (W + 2) numbers; their index is 32 bits.
  TORCH_CHECK(r.K < (int64_t(1) << 26),
              "systolic_matmul: K must be < 2^26, got ", r.K);
  r.protect = uint32_t(protect);
  r.seed = uint64_t(seed);
  r.layer = uint32_t(layer);
  r.row_offset = uint32_t(row_offset);
  r.rows = rows;
  return r;
}

at::Tensor make_fault_tables(const at::Tensor& p_bits, int64_t K, bool* any) {
  TORCH_CHECK(K >= 0, "fault tables: K must be >= 0, got ", K);
  const at::Tensor p = p_bits.to(at::kCPU, at::kDouble).contiguous();
  const int64_t W = p.size(0);
  TORCH_CHECK(W >= 1 && W <= 32, "fault tables: W must be in [1, 32], got ", W);
  const double* pp = p.data_ptr<double>();
  at::Tensor packed = at::zeros({K + 1 + W + W * W}, at::kLong);
  int64_t* gap = packed.data_ptr<int64_t>();
  int64_t* first = gap + K + 1;
  int64_t* next = first + W;
  // floor(x * 2^62): the product is exact (a power of two), the cast truncates.
  auto thresh = [](double x) { return int64_t(x * double(kOne)); };
  // Only +, -, *, / below, in a fixed order: every IEEE 754 machine (and
  // Python's floats in reference.py) gets the same bits. (-ffp-contract=off
  // in setup.py keeps the compiler from fusing them.)
  double c = 0.0;  // P(some bit <= b errs)
  double cum[32];
  for (int64_t b = 0; b < W; ++b) {
    c = c + (1.0 - c) * pp[b];
    cum[b] = c;
  }
  for (int64_t j = 0; j + 1 < W; ++j) {
    double cj = 0.0;  // P(some bit in (j, b] errs)
    for (int64_t b = j + 1; b < W; ++b) {
      cj = cj + (1.0 - cj) * pp[b];
      next[j * W + b] = thresh(cj);
    }
  }
  const double q = c;  // P(a MAC has at least one event)
  *any = q > 0.0;
  if (*any) {
    for (int64_t b = 0; b < W; ++b) first[b] = thresh(cum[b] / q);
    double d = 0.0;  // P(gap < g) = 1 - (1 - q)^g
    for (int64_t g = 1; g <= K; ++g) {
      d = d + (1.0 - d) * q;
      gap[g] = thresh(d);
    }
  }
  return packed;
}

FaultTables view_fault_tables(const at::Tensor& packed, int W, int64_t K,
                              bool any) {
  const int64_t* base = packed.const_data_ptr<int64_t>();
  return FaultTables{W, K, any, base, base + K + 1, base + K + 1 + W};  // gap | first | next
}

bool use_fast_path(c10::string_view impl, const MatmulArgs& r,
                   const at::Tensor& p_bits, int64_t min_fast_k) {
  TORCH_CHECK(impl == "auto" || impl == "fast" || impl == "simple",
              "systolic_matmul: impl must be 'auto', 'fast' or 'simple', got '", impl, "'");
  if (impl != "auto") return impl == "fast";
  if (r.K < min_fast_k) return false;
  // Share of outputs with at least one flip, 1 - (1 - q_flip)^K, where
  // q_flip = P(a MAC has an unprotected error). Only the speed depends on it.
  const at::Tensor p = p_bits.to(at::kCPU, at::kDouble).contiguous();
  const double* pp = p.const_data_ptr<double>();
  double no_flip = 1.0;
  for (int b = 0; b < r.W; ++b) {
    if (!((r.protect >> b) & 1u)) no_flip *= 1.0 - pp[b];
  }
  return 1.0 - std::pow(no_flip, double(r.K)) < 0.5;
}

namespace {

at::Tensor fault_tables_op(const at::Tensor& p_bits, int64_t K) {
  TORCH_CHECK(p_bits.dim() == 1 && p_bits.scalar_type() == at::kDouble,
              "_fault_tables: p_bits must be a 1-D float64 tensor");
  bool any = false;
  return make_fault_tables(p_bits, K, &any);
}

at::Tensor clean_gemm_op(const at::Tensor& a, const at::Tensor& w, int64_t acc_bits,
                         int64_t rows, c10::string_view method) {
  TORCH_CHECK(a.dim() == 3 && w.dim() == 3 && a.size(0) == w.size(0) && a.size(2) == w.size(1),
              "_clean_gemm: a must be [G, M, K] and w [G, K, N]");
  TORCH_CHECK((a.scalar_type() == at::kChar || a.scalar_type() == at::kByte) &&
              w.scalar_type() == at::kChar, "_clean_gemm: a must be int8/uint8 and w int8");
  TORCH_CHECK(acc_bits >= 8 && acc_bits <= 32 && rows >= 1, "_clean_gemm: bad acc_bits or rows");
  TORCH_CHECK(method == "float32" || method == "int_mm",
              "_clean_gemm: method must be 'float32' or 'int_mm'");
  return clean_systolic_gemm(a, w, int(acc_bits), rows,
                             method == "float32" ? GemmMethod::kFloat32 : GemmMethod::kIntMM);
}

}  // namespace

TORCH_LIBRARY(pyvs, m) {
  m.set_python_module("pyvs.ops");
  m.def(
      "systolic_matmul(Tensor a, Tensor w, Tensor p_bits, int protect=0, "
      "int seed=0, int layer=0, int row_offset=0, int rows=256, "
      "str impl='auto') -> (Tensor, Tensor)");
  // Host-side tables, exposed so tests can check reference.py against them.
  m.def("_fault_tables(Tensor p_bits, int K) -> Tensor");
  // The fast path's clean GEMM, exposed so tests can check each method.
  m.def("_clean_gemm(Tensor a, Tensor w, int acc_bits, int rows, str method) -> Tensor");
}

TORCH_LIBRARY_IMPL(pyvs, CompositeExplicitAutograd, m) {
  m.impl("_fault_tables", &fault_tables_op);
  m.impl("_clean_gemm", &clean_gemm_op);
}

}  // namespace pyvs

// Importing pyvs._C loads this library and so runs the registrations above;
// the module itself holds nothing.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
