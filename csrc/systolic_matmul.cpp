// systolic_matmul.cpp -- the op's schema, the argument checks shared by its
// backends, the host-side fault tables, the choice of path, and the
// preparation every backend starts from (prepare_matmul). Kernels:
// cpu/systolic_matmul_kernel.cpp and cuda/systolic_matmul_kernel.cu.
#include <Python.h>

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <optional>
#include <tuple>
#include <vector>

#include "systolic_matmul.h"

namespace pyvs {

namespace {

constexpr int64_t kMaxU32 = int64_t(1) << 32;
constexpr int kMinWidth = 8, kMaxWidth = 32;  // accumulator bits

using Probabilities = std::array<double, kMaxWidth>;

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

// p_bits, checked and copied to the host once per call: float64 [W],
// W = 8..32, every entry a probability. `op` names the caller in messages.
Probabilities read_probabilities(const at::Tensor& p_bits, const char* op) {
  TORCH_CHECK_TYPE(p_bits.scalar_type() == at::kDouble,
              op, ": p_bits must be float64, got ", p_bits.scalar_type());
  TORCH_CHECK_VALUE(p_bits.dim() == 1,
              op, ": p_bits must be 1-D [W], got shape ", shape_str(p_bits));
  const int64_t W = p_bits.size(0);
  TORCH_CHECK_VALUE(W >= kMinWidth && W <= kMaxWidth,
              op, ": p_bits has length ", W, "; the accumulator width W must be between ",
              kMinWidth, " and ", kMaxWidth, " bits");
  const at::Tensor p = p_bits.to(at::kCPU).contiguous();
  const double* pp = p.const_data_ptr<double>();
  Probabilities out{};
  for (int64_t b = 0; b < W; ++b) {
    TORCH_CHECK_VALUE(std::isfinite(pp[b]) && pp[b] >= 0.0 && pp[b] <= 1.0,
                op, ": p_bits[", b, "] = ", pp[b], " is not a probability in [0, 1]");
    out[b] = pp[b];
  }
  return out;
}

// Conditioned injection's tables (fault_model.h), checked and on the host:
// P patterns (masks), joint[L * P + j] = P(the erring bits are exactly
// pattern j | signature L), L = 0..W, and some[L] = P(some bit errs | L),
// the row sums (summed in j order: the tables' bits depend on it). P == 0:
// independent bits.
struct Conditioned {
  int64_t P = 0;
  std::vector<double> joint;
  std::vector<int64_t> patterns;
  std::vector<double> some;
};

constexpr int64_t kMaxPatterns = int64_t(1) << 16;

// patterns int64 [P] and joint float64 [W + 1, P], both or neither; `op`
// names the caller in messages.
Conditioned read_conditioned(const std::optional<at::Tensor>& patterns,
                             const std::optional<at::Tensor>& joint, int W, const char* op) {
  Conditioned c;
  TORCH_CHECK_VALUE(patterns.has_value() == joint.has_value(),
              op, ": patterns and joint go together (conditioned injection), got only ",
              patterns.has_value() ? "patterns" : "joint");
  if (!patterns.has_value()) return c;
  const at::Tensor& pt = *patterns;
  const at::Tensor& jt = *joint;
  TORCH_CHECK_TYPE(pt.scalar_type() == at::kLong, op, ": patterns must be int64, got ", pt.scalar_type());
  TORCH_CHECK_TYPE(jt.scalar_type() == at::kDouble, op, ": joint must be float64, got ", jt.scalar_type());
  TORCH_CHECK_VALUE(pt.dim() == 1 && pt.size(0) >= 1 && pt.size(0) <= kMaxPatterns,
              op, ": patterns must be 1-D [P] with 1 <= P <= ", kMaxPatterns, ", got shape ", shape_str(pt));
  c.P = pt.size(0);
  TORCH_CHECK_VALUE(jt.dim() == 2 && jt.size(0) == W + 1 && jt.size(1) == c.P,
              op, ": joint must be [W + 1, P] = [", W + 1, ", ", c.P, "] (a row per signature 0..W, a "
              "column per pattern), got shape ", shape_str(jt));
  const at::Tensor ph = pt.to(at::kCPU).contiguous(), jh = jt.to(at::kCPU).contiguous();
  c.patterns.assign(ph.const_data_ptr<int64_t>(), ph.const_data_ptr<int64_t>() + c.P);
  c.joint.assign(jh.const_data_ptr<double>(), jh.const_data_ptr<double>() + (W + 1) * c.P);
  for (int64_t j = 0; j < c.P; ++j) {
    TORCH_CHECK_VALUE(c.patterns[j] >= 1 && c.patterns[j] < (int64_t(1) << W),
                op, ": patterns[", j, "] = ", c.patterns[j], " is not a non-empty mask of the ", W,
                "-bit accumulator's bits");
  }
  for (int L = 0; L <= W; ++L) {
    double total = 0.0;
    for (int64_t j = 0; j < c.P; ++j) {
      const double x = c.joint[L * c.P + j];
      TORCH_CHECK_VALUE(std::isfinite(x) && x >= 0.0 && x <= 1.0,
                  op, ": joint[", L, ", ", j, "] = ", x, " is not a probability in [0, 1]");
      total = total + x;
    }
    TORCH_CHECK_VALUE(total <= 1.0 + 1e-9,
                op, ": joint[", L, "] sums to ", total, " > 1 (a MAC errs in at most one pattern)");
    c.some.push_back(total);
  }
  return c;
}

// Every argument but impl; *p receives p_bits.
MatmulArgs check_matmul_args(const at::Tensor& a, const at::Tensor& w, const at::Tensor& p_bits,
                             int64_t protect, int64_t seed, int64_t layer, int64_t row_offset,
                             int64_t rows, bool drop, Probabilities* p) {
  TORCH_CHECK_TYPE(a.scalar_type() == at::kChar || a.scalar_type() == at::kByte,
              "systolic_matmul: a must be int8 or uint8, got ", a.scalar_type());
  TORCH_CHECK_TYPE(w.scalar_type() == at::kChar,
              "systolic_matmul: w must be int8, got ", w.scalar_type());
  TORCH_CHECK_VALUE(a.dim() == 2 || a.dim() == 3,
              "systolic_matmul: a must be [M, K] or [G, M, K], got shape ", shape_str(a));
  TORCH_CHECK_VALUE(w.dim() == a.dim(),
              "systolic_matmul: w must have the rank of a (", a.dim(),
              "), i.e. [K, N] or [G, K, N], got shape ", shape_str(w));
  TORCH_CHECK_VALUE(a.device() == w.device(),
              "systolic_matmul: a and w must be on the same device, got a on ",
              a.device(), " and w on ", w.device());
  TORCH_CHECK_VALUE(p_bits.device().is_cpu() || p_bits.device() == a.device(),
              "systolic_matmul: p_bits must be on the CPU or on a's device (",
              a.device(), "), got ", p_bits.device());
  MatmulArgs r;
  r.batched = a.dim() == 3;
  r.G = r.batched ? a.size(0) : 1;
  r.M = a.size(-2);
  r.K = a.size(-1);
  r.N = w.size(-1);
  TORCH_CHECK_VALUE(w.size(-2) == r.K,
              "systolic_matmul: K mismatch: a is ", shape_str(a), " and w is ", shape_str(w),
              " (a's last dimension must equal w's second-to-last)");
  TORCH_CHECK_VALUE(!r.batched || w.size(0) == r.G,
              "systolic_matmul: group count mismatch: a has ", r.G, " groups and w has ",
              w.size(0));
  *p = read_probabilities(p_bits, "systolic_matmul");
  r.W = int(p_bits.size(0));
  TORCH_CHECK_VALUE(protect >= 0 && protect < (int64_t(1) << r.W),
              "systolic_matmul: protect mask 0x", std::hex, protect, std::dec,
              " has bits outside the ", r.W, "-bit accumulator (allowed: 0 to 2^", r.W, " - 1)");
  TORCH_CHECK_VALUE(rows >= 1,
              "systolic_matmul: rows (systolic array height) must be >= 1, got ", rows);
  TORCH_CHECK_VALUE(layer >= 0 && layer < kMaxU32,
              "systolic_matmul: layer (stream id) must be in [0, 2^32), got ", layer);
  // Written so that row_offset + M cannot overflow int64.
  TORCH_CHECK_VALUE(row_offset >= 0 && row_offset <= kMaxU32 - r.M,
              "systolic_matmul: row_offset + M must be in [0, 2^32], got row_offset=",
              row_offset, " M=", r.M);
  TORCH_CHECK_VALUE(r.G * r.N <= kMaxU32,
              "systolic_matmul: G * N (global columns) must be <= 2^32, got ", r.G * r.N);
  // An output draws at most 1 + K * (W + 2) numbers; their index is 32 bits.
  TORCH_CHECK_VALUE(r.K < (int64_t(1) << 26), "systolic_matmul: K must be < 2^26, got ", r.K);
  r.protect = uint32_t(protect);
  r.drop = drop;
  r.seed = uint64_t(seed);
  r.layer = uint32_t(layer);
  r.row_offset = uint32_t(row_offset);
  r.rows = rows;
  return r;
}

// The tables of fault_model.h, packed into one CPU int64 tensor of length
// (K + 1) + W + W * W: gap | first | next, then with conditioned injection
// (W + 1) + (W + 1) * P + P: accept | cum | patterns. *any: whether an
// event can happen.
at::Tensor make_fault_tables(const Probabilities& p, int W, int64_t K, const Conditioned& cond, bool* any) {
  const int64_t P = cond.P;
  at::Tensor packed = at::zeros({K + 1 + W + W * W + (P ? (W + 1) * (P + 1) + P : 0)}, at::kLong);
  int64_t* gap = packed.data_ptr<int64_t>();
  int64_t* first = gap + K + 1;
  int64_t* next = first + W;
  // floor(x * 2^62): the product is exact (a power of two), the cast truncates.
  auto thresh = [](double x) { return int64_t(x * double(kOne)); };
  // Only +, -, *, / below, in a fixed order: every IEEE 754 machine (and
  // Python's floats in reference.py) gets the same bits. (-ffp-contract=off
  // in setup.py keeps the compiler from fusing them.)
  double c = 0.0;  // P(some bit <= b errs)
  double cum[kMaxWidth];
  for (int b = 0; b < W; ++b) {
    c = c + (1.0 - c) * p[b];
    cum[b] = c;
  }
  for (int j = 0; j + 1 < W; ++j) {
    double cj = 0.0;  // P(some bit in (j, b] errs)
    for (int b = j + 1; b < W; ++b) {
      cj = cj + (1.0 - cj) * p[b];
      next[j * W + b] = thresh(cj);
    }
  }
  double q = c;  // P(a MAC has at least one event)
  if (P) {  // conditioned: candidates at the bound rate, accepted per signature
    int64_t* accept = next + W * W;
    int64_t* cum_c = accept + W + 1;
    int64_t* patterns = cum_c + (W + 1) * P;
    const std::vector<double>& some = cond.some;
    q = *std::max_element(some.begin(), some.end());
    for (int L = 0; L <= W && q > 0.0; ++L) {
      accept[L] = thresh(some[L] / q);
      double run = 0.0;
      for (int64_t j = 0; j < P && some[L] > 0.0; ++j) {
        run = run + cond.joint[L * P + j];
        cum_c[L * P + j] = thresh(run / some[L]);
      }
    }
    for (int64_t j = 0; j < P; ++j) patterns[j] = cond.patterns[j];
  }
  *any = q > 0.0;
  if (*any) {
    for (int b = 0; b < W; ++b) first[b] = thresh(cum[b] / q);
    double d = 0.0;  // P(gap < g) = 1 - (1 - q)^g
    for (int64_t g = 1; g <= K; ++g) {
      d = d + (1.0 - d) * q;
      gap[g] = thresh(d);
    }
  }
  return packed;
}

// The tables of one (p, K) on a GPU, cached: a forward pass calls the op
// once per layer with a handful of distinct (p, K), and copying each call's
// tables from the host would synchronise the host with the device every
// time. The cache is keyed by the exact bits of p, so it never changes a
// result; it is cleared when it outgrows kMaxCachedBytes (sweeps visit many
// tables). It is never destroyed: a CUDA tensor freed after the driver shut
// down at exit would fail.
at::Tensor device_fault_tables(const Probabilities& p, int W, int64_t K, const Conditioned& cond,
                               const at::Device& device, bool* any) {
  constexpr size_t kMaxCachedBytes = size_t(256) << 20;
  struct Entry {
    at::Tensor tables;
    bool any;
  };
  using Key = std::tuple<int, int64_t, std::string>;  // device, K, the bits of p[0..W) and cond
  static auto* cache = new std::map<Key, Entry>();
  static auto* mutex = new std::mutex();
  static size_t bytes = 0;
  std::string bits(reinterpret_cast<const char*>(p.data()), sizeof(double) * W);
  bits.append(reinterpret_cast<const char*>(cond.joint.data()), sizeof(double) * cond.joint.size());
  bits.append(reinterpret_cast<const char*>(cond.patterns.data()), sizeof(int64_t) * cond.patterns.size());
  Key key{device.index(), K, std::move(bits)};
  const std::lock_guard<std::mutex> lock(*mutex);
  auto it = cache->find(key);
  if (it == cache->end()) {
    at::Tensor host = make_fault_tables(p, W, K, cond, any);
    const size_t size = size_t(host.numel()) * sizeof(int64_t);
    if (bytes + size > kMaxCachedBytes) {
      cache->clear();
      bytes = 0;
    }
    it = cache->emplace(std::move(key), Entry{host.to(device), *any}).first;
    bytes += size;
  }
  *any = it->second.any;
  return it->second.tables;
}

// The fast path (clean product + patches) or the simple one. Both give the
// same bits; this decides only the speed: "auto" takes the fast path unless K
// is below the backend's threshold (a GEMM is pointless at K = 9) and the
// backend has no direct product for the shape, or the
// rate of events that change a sum (unprotected errors; with TE-Drop, every
// error) leaves at least half of the outputs to patch (then the patches redo
// the simple path's work).
bool use_fast_path(c10::string_view impl, const MatmulArgs& r, const Probabilities& p, const Conditioned& cond,
                   const Backend& backend) {
  TORCH_CHECK_VALUE(impl == "auto" || impl == "fast" || impl == "simple",
              "systolic_matmul: impl must be 'auto', 'fast' or 'simple', got '", impl, "'");
  if (impl != "auto") return impl == "fast";
  if (r.K < backend.min_fast_k && !(backend.depthwise && r.N == 1)) return false;
  // Share of outputs with at least one change, 1 - (1 - q_change)^K, where
  // q_change = P(a MAC has an error that changes its sum).
  double no_flip = 1.0;
  for (int b = 0; b < r.W; ++b) {
    if (r.drop || !((r.protect >> b) & 1u)) no_flip *= 1.0 - p[b];
  }
  for (const double some : cond.some) no_flip = std::min(no_flip, 1.0 - some);  // conditioned: the bound rate
  return 1.0 - std::pow(no_flip, double(r.K)) < 0.5;
}

// w [G, K, N] in the one layout every kernel reads: column-major, i.e. the
// transpose of a contiguous [G, N, K]; no copy when it already is (the
// layers keep their weights so).
at::Tensor column_major(const at::Tensor& w3) {
  return w3.transpose(1, 2).contiguous().transpose(1, 2);
}

}  // namespace

PreparedMatmul prepare_matmul(const at::Tensor& a, const at::Tensor& w, const at::Tensor& p_bits,
                              int64_t protect, int64_t seed, int64_t layer, int64_t row_offset,
                              int64_t rows, c10::string_view impl, bool drop,
                              const std::optional<at::Tensor>& patterns, const std::optional<at::Tensor>& joint,
                              const Backend& backend) {
  PreparedMatmul c;
  Probabilities p;
  c.r = check_matmul_args(a, w, p_bits, protect, seed, layer, row_offset, rows, drop, &p);
  const MatmulArgs& r = c.r;
  const Conditioned cond = read_conditioned(patterns, joint, r.W, "systolic_matmul");
  for (int b = 0; b < r.W && cond.P; ++b) {
    TORCH_CHECK_VALUE(p[b] == 0.0, "systolic_matmul: with patterns and joint (conditioned injection) p_bits "
                "only gives the width W and must be all zeros, got p_bits[", b, "] = ", p[b]);
  }
  for (const auto* t : {&patterns, &joint}) {
    TORCH_CHECK_VALUE(!t->has_value() || (*t)->device().is_cpu() || (*t)->device() == a.device(),
                "systolic_matmul: patterns and joint must be on the CPU or on a's device (", a.device(),
                "), got ", (*t)->device());
  }
  c.fast = use_fast_path(impl, r, p, cond, backend);
  c.a3 = a.reshape({r.G, r.M, r.K});
  // The CPU's simple path reads each output's K activations in a row: give
  // it rows (the fast path reads them only around flips, and its clean
  // products take any layout).
  if (!c.fast && !backend.strided_simple && c.a3.stride(2) != 1) c.a3 = c.a3.contiguous();
  c.groups_inner = backend.strided_simple && r.N == 1 && r.G > 1 && c.a3.stride(0) == 1;
  const auto int32 = a.options().dtype(at::kInt);
  c.w3 = column_major(w.reshape({r.G, r.K, r.N}));
  bool any = false;
  c.tables = a.device().is_cpu() ? make_fault_tables(p, r.W, r.K, cond, &any)
                                 : device_fault_tables(p, r.W, r.K, cond, a.device(), &any);
  const int64_t* base = c.tables.const_data_ptr<int64_t>();
  c.t = FaultTables{r.W, r.K, any, base, base + r.K + 1, base + r.K + 1 + r.W};
  if (cond.P) {
    c.t.P = int(cond.P);
    c.t.accept = base + r.K + 1 + r.W + r.W * r.W;
    c.t.cum = c.t.accept + r.W + 1;
    c.t.patterns = c.t.cum + (r.W + 1) * cond.P;
  }
  if (!c.fast) {
    c.out = c.groups_inner ? at::empty({r.M, r.G}, int32).t().unsqueeze(2)
                           : at::empty({r.G, r.M, r.N}, int32);
  } else if (backend.depthwise && r.N == 1) {
    c.out = backend.depthwise(c.a3, c.w3, r.W, r.rows);
  } else {
    c.out = clean_systolic_gemm(c.a3, c.w3, r.W, r.rows, r.G > 1 ? backend.groups : backend.gemm);
  }
  // Whatever the path, the layout depends only on a (the fake kernel's rule).
  if (c.fast && c.groups_inner) c.out = at::empty({r.M, r.G}, int32).t().unsqueeze(2).copy_(c.out);
  c.stats = at::zeros({2, r.W}, a.options().dtype(at::kLong));
  return c;
}

std::tuple<at::Tensor, at::Tensor> PreparedMatmul::result() const {
  return {r.batched ? out : out.view({r.M, r.N}), stats};
}

namespace {

// ---- Private ops, for the tests ---------------------------------------------

at::Tensor fault_tables_op(const at::Tensor& p_bits, int64_t K, const std::optional<at::Tensor>& patterns,
                           const std::optional<at::Tensor>& joint) {
  TORCH_CHECK_VALUE(K >= 0, "_fault_tables: K must be >= 0, got ", K);
  const Probabilities p = read_probabilities(p_bits, "_fault_tables");
  const int W = int(p_bits.size(0));
  bool any = false;
  return make_fault_tables(p, W, K, read_conditioned(patterns, joint, W, "_fault_tables"), &any);
}

void check_gemm_operands(const at::Tensor& a, const at::Tensor& w, int64_t dims, const char* op) {
  TORCH_CHECK_VALUE(a.dim() == dims && w.dim() == dims && a.size(-1) == w.size(-2) &&
                  (dims == 2 || a.size(0) == w.size(0)),
              op, dims == 2 ? ": a must be [M, K] and w [K, N]" : ": a must be [G, M, K] and w [G, K, N]");
  TORCH_CHECK_TYPE((a.scalar_type() == at::kChar || a.scalar_type() == at::kByte) &&
                  w.scalar_type() == at::kChar,
              op, ": a must be int8/uint8 and w int8");
}

at::Tensor clean_gemm_op(const at::Tensor& a, const at::Tensor& w, int64_t acc_bits,
                         int64_t rows, c10::string_view method) {
  check_gemm_operands(a, w, 3, "_clean_gemm");
  TORCH_CHECK_VALUE(acc_bits >= kMinWidth && acc_bits <= kMaxWidth && rows >= 1,
              "_clean_gemm: bad acc_bits or rows");
  TORCH_CHECK_VALUE(method == "float32" || method == "int_mm",
              "_clean_gemm: method must be 'float32' or 'int_mm'");
  return clean_systolic_gemm(a, w, int(acc_bits), rows,
                             method == "float32" ? GemmMethod::kFloat32 : GemmMethod::kIntMM);
}

std::tuple<at::Tensor, at::Tensor> int_mm_operands_op(const at::Tensor& a, const at::Tensor& w) {
  check_gemm_operands(a, w, 2, "_int_mm_operands");
  TORCH_CHECK_TYPE(a.scalar_type() == at::kChar, "_int_mm_operands: a must be int8");
  return int_mm_operands(a, w);
}

}  // namespace

TORCH_LIBRARY(pyvs, m) {
  m.set_python_module("pyvs.ops");
  // rows=256 mirrors pyvs.hardware.ROWS (the default array height; a test
  // checks that they agree).
  m.def(
      "systolic_matmul(Tensor a, Tensor w, Tensor p_bits, int protect=0, "
      "int seed=0, int layer=0, int row_offset=0, int rows=256, "
      "str impl='auto', bool drop=False, Tensor? patterns=None, Tensor? joint=None) -> (Tensor, Tensor)");
  // Host-side tables, exposed so tests can check reference.py against them.
  m.def("_fault_tables(Tensor p_bits, int K, Tensor? patterns=None, Tensor? joint=None) -> Tensor");
  // The fast path's clean GEMM, exposed so tests can check each method.
  m.def("_clean_gemm(Tensor a, Tensor w, int acc_bits, int rows, str method) -> Tensor");
  // What the clean GEMM hands to torch._int_mm, so that CPU tests pin the
  // layout that cuBLASLt needs on a GPU.
  m.def("_int_mm_operands(Tensor a, Tensor w) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(pyvs, CompositeExplicitAutograd, m) {
  m.impl("_fault_tables", &fault_tables_op);
}

// Implicit: a TorchDispatchMode then sees the ATen ops inside (the tests
// record what reaches aten::_int_mm).
TORCH_LIBRARY_IMPL(pyvs, CompositeImplicitAutograd, m) {
  m.impl("_clean_gemm", &clean_gemm_op);
  m.impl("_int_mm_operands", &int_mm_operands_op);
}

}  // namespace pyvs

// Importing pyvs._C loads this library and so runs the registrations above;
// the module itself holds nothing.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
