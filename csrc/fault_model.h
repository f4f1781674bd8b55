// fault_model.h -- the timing-error law shared by every backend and the reference.
//
// This header is the contract: the CPU kernel, the CUDA kernel and the
// pure-PyTorch reference (pyvs/reference.py) all implement exactly what is
// written here, so that the same (seed, layer, row, column) gives the same
// timing-error events, bit for bit, on every device.
//
// Semantics of one output (m, n) of systolic_matmul, W-bit accumulator:
//   for every K-tile of `rows` MACs (a weight-stationary column of PEs):
//     s = 0                                     (W-bit partial sum)
//     for k in the tile, in order:
//       s = wrap_W(s + a[m,k] * w[k,n])
//       each bit b of s independently suffers a timing error with
//       probability p[b]; what the erring bits E do:
//         replay (drop = false):
//           protected b in E -> detected and corrected (bit b right, a replay)
//           other b in E     -> bit b of s flips
//         drop (drop = true, TE-Drop):
//           some protected b in E -> the update is dropped: s keeps its value
//                                    from before this MAC (no flip lands)
//           none protected        -> the bits of E flip, as above
//     out[m,n] += sign_extend_W(s)              (int32, wraps mod 2^32)
//   Counts per bit: injected = flips that land; corrected = protected bits
//   in E (replays, or the erring bits of a dropped MAC's protected bits).
//
// How the events are drawn (never one random number per MAC and bit):
//   q = P(at least one bit errs at a MAC) = 1 - prod_b (1 - p[b]).
//   An output's events are a sequence over its K MACs; the gap between two
//   MACs with events is geometric(q), sampled by inverse CDF from a table.
//   At a MAC with an event, the lowest erring bit is drawn from its
//   conditional distribution P(first = b | any); then, from each erring bit
//   j, one draw picks the next erring bit above j, or none, from
//   P(next = b | j) = prod_{j<i<b} (1 - p[i]) * p[b]. This is exactly the law
//   of independent Bernoulli(p[b]) events per (MAC, bit), at about two draws
//   per event plus one per erring bit.
//
// Conditioned injection (the op given patterns and joint tables). A MAC's
// errors then depend on its own operands, through its signature
//   L = the number of top bits, from bit W-1 down, in which the partial sum
//       entering the MAC (x, W bits, the faulty one: earlier errors of the
//       tile included) and its product (a * w as W bits) differ
// (a carry entering that run of propagating adder cells ripples through
// all of it before the top bits settle; pyvs/timing/signatures.py), and the
// erring bits are exactly pattern j with probability joint[L][j]. Drawn by
// thinning: candidate MACs come at the bound rate
//   q = max over L of P(some bit errs | L) = sum over j of joint[L][j]
// (the gap table above, with this q); at a candidate one draw u accepts it
// when u < accept[L] = floor(P(some | L) / q * 2^62), then one draw v picks
// the smallest j with v < cum[L][j] = floor(P(pattern <= j | L, some) *
// 2^62) (capped at the last pattern). A rejected candidate is no event. What
// the erring bits do (replay, flip, TE-Drop) is as above.
//
// Bit-identity across devices rules out log/exp/pow in the kernels (libm,
// CUDA and torch differ in the last ulp). All floating-point work happens
// once on the host (make_fault_tables in systolic_matmul.cpp, mirrored by
// reference.py) with +, -, *, / only, which IEEE 754 rounds exactly; the
// kernels compare and add integers only.
//
// Random numbers: Philox4x32-10 (Salmon et al., SC'11), keyed by the 64-bit
// seed, counter = (i / 2, global column, global row, layer). Draw i of an
// output is u = (x1:x0) >> 2 for even i and (x3:x2) >> 2 for odd i, a
// uniform integer in [0, 2^62); an event of probability x happens when
// u < floor(x * 2^62).
//
// The first draw, screened. Most outputs have no event at all, and one
// Philox block per output to learn that would cost more than the clean GEMM
// itself. So the first uniform of output (row, col) is
//   u0 = v * 2^30 + (draw 0 of the output's stream mod 2^30),
// where v, 32 bits, is word (row mod 4) of the screening block with counter
// (2^31, col, row / 4, layer): one block serves four rows of a column. Its
// counter never occurs in an output stream (i / 2 < 2^31 there), so u0 is
// uniform on [0, 2^62) like any draw, and the law above is unchanged. When
// v * 2^30 >= gap[K], u0 >= gap[K] whatever the low bits: no event, and the
// output's own stream is never touched.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PYVS_HD __host__ __device__ __forceinline__
#else
#define PYVS_HD inline
#endif

namespace pyvs {

// Thresholds live in [0, 2^62] so that they fit a signed int64 (what torch
// stores) and p = 1 is exactly "always".
constexpr int kUniformBits = 62;
constexpr int64_t kOne = int64_t(1) << kUniformBits;

// ---- Philox4x32-10 -------------------------------------------------------
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

struct Philox4 {
  uint32_t x[4];
};

PYVS_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2,
                              uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(kPhiloxM0) * c0;
    const uint64_t p1 = uint64_t(kPhiloxM1) * c2;
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Counter word 0 of the screening blocks; output streams stay below it.
constexpr uint32_t kScreenCounter = 0x80000000u;
constexpr int kScreenShift = kUniformBits - 32;  // v * 2^30

// The screening block of global rows 4 * (row / 4) .. + 3 of column col:
// word j screens row 4 * (row / 4) + j.
PYVS_HD Philox4 screen_block(uint64_t seed, uint32_t layer, uint32_t row, uint32_t col) {
  return philox4x32_10(kScreenCounter, col, row >> 2, layer, uint32_t(seed),
                       uint32_t(seed >> 32));
}

// Word j (0..3) of a block, by selects rather than a dynamically indexed
// array, which CUDA would put in local memory.
PYVS_HD uint32_t block_word(const Philox4& b, uint32_t j) {
  return j == 0 ? b.x[0] : j == 1 ? b.x[1] : j == 2 ? b.x[2] : b.x[3];
}

// The screening word of one output, without sharing the block.
PYVS_HD uint32_t screen_word(uint64_t seed, uint32_t layer, uint32_t row, uint32_t col) {
  return block_word(screen_block(seed, layer, row, col), row & 3u);
}

// The stream of one output: draw i is a pure function of (seed, layer,
// row, column, i); `screen` is the output's screening word (see the top of
// this file), from screen_block, which callers may share across rows.
struct OutputStream {
  uint32_t k0, k1;    // seed
  uint32_t col, row;  // global column (group * N + n), global row
  uint32_t layer;
  uint32_t screen;    // v: the top 32 bits of the first uniform
  uint32_t next = 0;  // draw index
  int64_t spare = 0;  // draw next, when next is odd

  PYVS_HD OutputStream(uint64_t seed, uint32_t layer_, uint32_t row_,
                       uint32_t col_, uint32_t screen_)
      : k0(uint32_t(seed)), k1(uint32_t(seed >> 32)), col(col_), row(row_),
        layer(layer_), screen(screen_) {}

  // Uniform integer in [0, 2^62).
  PYVS_HD int64_t uniform() {
    if (next & 1u) {
      ++next;
      return spare;
    }
    const Philox4 r = philox4x32_10(next++ >> 1, col, row, layer, k0, k1);
    spare = int64_t(((uint64_t(r.x[3]) << 32) | r.x[2]) >> (64 - kUniformBits));
    return int64_t(((uint64_t(r.x[1]) << 32) | r.x[0]) >> (64 - kUniformBits));
  }
};

// ---- Host-precomputed tables, read-only in the kernels --------------------
// W <= 32 bits. All thresholds are in [0, 2^62].
struct FaultTables {
  int W;                     // accumulator width, bits
  int64_t K;                 // MACs per output; gap[] has K + 1 entries
  bool any;                  // false: every p is 0, no draws at all
  const int64_t* gap;        // gap[g] = floor((1 - (1-q)^g) * 2^62), g=0..K
  const int64_t* first;      // first[b] = floor(P(lowest erring bit <= b | any) * 2^62)
  const int64_t* next;       // next[j*W + b] = floor(P(some bit in (j, b] errs) * 2^62),
                             // 0 for b <= j; row j = W-1 unused
  int P = 0;                 // conditioned injection: patterns; 0: independent bits
  const int64_t* accept = nullptr;    // [W + 1]: floor(P(some | L) / q * 2^62)
  const int64_t* cum = nullptr;       // [(W + 1) * P]: cum[L * P + j]
  const int64_t* patterns = nullptr;  // [P]: masks of erring bits
};

// Largest g in [0, K] with gap[g] <= u: the number of clean MACs before the
// next event. g == K means "no further event in this output".
PYVS_HD int64_t sample_gap(const FaultTables& t, int64_t u) {
  // Most draws say "no further event": answer those without the search.
  if (t.gap[t.K] <= u) return t.K;
  int64_t lo = 0, hi = t.K;  // invariant: gap[lo] <= u (gap[0] == 0)
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (t.gap[mid] <= u) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Position of the first MAC with an event (K: none), from the screened
// first uniform; the output's own draw 0 is spent only when the screening
// word leaves an event possible.
PYVS_HD int64_t first_event(const FaultTables& t, OutputStream& rs) {
  if (!t.any) return t.K;
  const int64_t high = int64_t(rs.screen) << kScreenShift;
  if (high >= t.gap[t.K]) return t.K;
  constexpr int64_t kLow = (int64_t(1) << kScreenShift) - 1;
  return sample_gap(t, high | (rs.uniform() & kLow));
}

// Bits that err at one MAC that has an event (at least one bit errs).
PYVS_HD uint32_t sample_event_bits(const FaultTables& t, OutputStream& rs) {
  const int64_t u = rs.uniform();
  // Smallest j with u < first[j] (first[] is non-decreasing; first[W-1] is
  // 2^62 up to rounding, hence the cap at W - 1), by bisection: erring
  // bits are usually the top ones.
  int j = 0, hi = t.W - 1;  // the answer lies in [j, hi]
  while (j < hi) {
    const int mid = (j + hi) / 2;
    if (u < t.first[mid]) hi = mid; else j = mid + 1;
  }
  uint32_t bits = 1u << j;
  // From erring bit j, the next erring bit above it, if any. No draw is
  // spent when no higher bit can err.
  while (j < t.W - 1 && t.next[j * t.W + t.W - 1] > 0) {
    const int64_t v = rs.uniform();
    int b = j + 1;
    while (b < t.W && v >= t.next[j * t.W + b]) ++b;
    if (b == t.W) break;
    bits |= 1u << b;
    j = b;
  }
  return bits;
}

// Number of leading one bits of x (32 when x is all ones).
PYVS_HD int leading_ones(uint32_t x) {
  if (x == 0xFFFFFFFFu) return 32;
#if defined(__CUDA_ARCH__)
  return __clz(int(~x));
#else
  return __builtin_clz(~x);
#endif
}

// The signature L of a MAC (conditioned injection): the top bits in which
// the entering partial sum x and the product differ (both W-bit patterns,
// taken mod 2^W here), 0..W.
PYVS_HD int signature_of(uint32_t x, uint32_t product, int W) {
  // Bits below the W-bit window are zeros after the shift: the count stops there.
  const int run = leading_ones((x ^ product) << (32 - W));
  return run < W ? run : W;
}

// The erring bits of a candidate MAC under conditioned injection, 0 when
// the candidate is rejected (no event); x: the partial sum entering it,
// product: a * w (mod 2^32 both).
PYVS_HD uint32_t sample_conditioned_bits(const FaultTables& t, OutputStream& rs, uint32_t x,
                                         uint32_t product) {
  const int L = signature_of(x, product, t.W);
  if (rs.uniform() >= t.accept[L]) return 0u;
  const int64_t v = rs.uniform();
  const int64_t* c = t.cum + int64_t(L) * t.P;
  int j = 0;
  while (j < t.P - 1 && v >= c[j]) ++j;
  return uint32_t(t.patterns[j]);
}

// Index of the lowest set bit of x != 0.
PYVS_HD int lowest_bit(uint32_t x) {
#if defined(__CUDA_ARCH__)
  return __ffs(int(x)) - 1;
#else
  return __builtin_ctz(x);
#endif
}

// Whether a MAC whose erring bits are `bits` is dropped (TE-Drop).
PYVS_HD bool dropped(uint32_t bits, uint32_t protect, bool drop) {
  return drop && (bits & protect) != 0u;
}

// Counts the event bits of one MAC: corrected if protected, else injected,
// except that a dropped MAC's unprotected bits land nowhere and count not.
template <typename Counter>
PYVS_HD void count_events(uint32_t bits, uint32_t protect, bool drop, Counter& counter) {
  if (dropped(bits, protect, drop)) bits &= protect;
  for (; bits; bits &= bits - 1) {
    const int b = lowest_bit(bits);
    counter.add(b, (protect >> b) & 1u);
  }
}

PYVS_HD uint32_t width_mask(int W) {
  return W >= 32 ? 0xFFFFFFFFu : ((1u << W) - 1u);
}

PYVS_HD int32_t sign_extend(uint32_t s, int W) {
  // Shift the W-bit value to the top of 32 bits, then arithmetic-shift back.
  return int32_t(s << (32 - W)) >> (32 - W);
}

// Activations read with a stride: a[k] is p[k * stride]. A plain pointer
// serves where the stride is 1 (and the compiler can vectorize).
template <typename T>
struct Strided {
  const T* p;
  int64_t stride;
  PYVS_HD T operator[](int64_t k) const { return p[k * stride]; }
};

// One output of systolic_matmul, exactly as specified at the top of this
// file. a: its K activations, a[k] (a pointer or Strided); w: K weights,
// w_stride apart; rows: tile height, MACs; drop: TE-Drop instead of
// replays. Counter::add(bit, corrected) is called once per counted event
// bit. Returns the int32 output.
template <typename Acts, typename Counter>
PYVS_HD int32_t systolic_output(Acts a, const int8_t* w,
                                int64_t w_stride, int64_t rows,
                                const FaultTables& t, uint32_t protect,
                                bool drop, OutputStream rs, Counter& counter) {
  const int64_t K = t.K;
  const uint32_t mask = width_mask(t.W);
  // Position of the next MAC with an event; K means none left.
  int64_t next_event = first_event(t, rs);
  uint32_t out = 0;  // int32 output, wrapping
  for (int64_t k0 = 0; k0 < K; k0 += rows) {
    const int64_t k_end = k0 + rows < K ? k0 + rows : K;
    uint32_t s = 0;  // wraps mod 2^32; the W-bit value is s & mask
    int64_t k = k0;
    while (k < k_end) {
      const int64_t seg_end = next_event < k_end ? next_event + 1 : k_end;
      for (; k < seg_end; ++k) {
        s += uint32_t(int32_t(a[k]) * int32_t(w[k * w_stride]));
      }
      if (k - 1 == next_event) {
        const uint32_t product = uint32_t(int32_t(a[k - 1]) * int32_t(w[(k - 1) * w_stride]));
        const uint32_t bits = t.P ? sample_conditioned_bits(t, rs, s - product, product)
                                  : sample_event_bits(t, rs);
        if (bits) {  // 0: a rejected candidate (conditioned injection)
          count_events(bits, protect, drop, counter);
          if (dropped(bits, protect, drop)) {
            s -= product;
          } else {
            s = (s & mask) ^ (bits & ~protect);
          }
        }
        next_event = k + sample_gap(t, rs.uniform());
        if (next_event > K) next_event = K;
      }
    }
    out += uint32_t(sign_extend(s & mask, t.W));
  }
  return int32_t(out);
}

// The fast path's share of one output (same arguments as systolic_output).
//
// The events are drawn before the data is looked at and do not depend on it,
// so an output can be split into its clean value plus a patch:
//   systolic_output(...) == clean + output_patch(...)   (mod 2^32)
// where clean = sum over tiles of sign_extend_W(clean tile sum), computed by
// any exact integer GEMM. This function draws the very same events, in the
// same order, as systolic_output and counts them; it touches the data only
// at events that change the sum: a flip of bit b at step k moves the
// partial sum by +2^b if bit b of it is 0 and by -2^b if it is 1, so it needs
// the partial sum at k, which is rebuilt from the tile start (or from the
// previous change in the same tile); a dropped MAC moves it by minus its
// product. Corrected events change nothing and cost no MAC. Under
// conditioned injection the candidates are drawn before the data is looked
// at, and each needs its partial sum (its signature), accepted or not.
// Returns faulty - clean, mod 2^32.
template <typename Acts, typename Counter>
PYVS_HD uint32_t output_patch(Acts a, const int8_t* w, int64_t w_stride,
                              int64_t rows, const FaultTables& t,
                              uint32_t protect, bool drop, OutputStream rs,
                              Counter& counter) {
  const int64_t K = t.K;
  const uint32_t mask = width_mask(t.W);
  uint32_t patch = 0;
  // The tile with pending flips: [.., tile_end), partial sum s (faulty, mod
  // 2^32; its W-bit value is s & mask) summed up to pos, and d = faulty -
  // clean. tile_end == 0: no tile pending.
  int64_t tile_end = 0, pos = 0;
  uint32_t s = 0, d = 0;
  auto finish_tile = [&]() -> uint32_t {
    // A W-bit tile whose clean sum wraps (W < 32) needs both sums at its
    // end; with W = 32, sign extension is the identity and d is the answer,
    // as it is when nothing changed (a tile opened for rejected candidates).
    if (t.W == 32 || d == 0) return d;
    for (; pos < tile_end; ++pos) s += uint32_t(int32_t(a[pos]) * int32_t(w[pos * w_stride]));
    return uint32_t(sign_extend(s & mask, t.W)) -
           uint32_t(sign_extend((s - d) & mask, t.W));
  };
  // The faulty partial sum s through MAC k (opening k's tile if it is not the pending one).
  auto sum_through = [&](int64_t k) {
    if (k >= tile_end) {
      if (tile_end > 0) patch += finish_tile();
      pos = k - k % rows;
      tile_end = pos + rows < K ? pos + rows : K;
      s = 0;
      d = 0;
    }
    for (; pos <= k; ++pos) s += uint32_t(int32_t(a[pos]) * int32_t(w[pos * w_stride]));
  };
  for (int64_t k = first_event(t, rs); k < K; k += 1 + sample_gap(t, rs.uniform())) {
    uint32_t bits;
    if (t.P) {  // conditioned: every candidate needs its operands
      sum_through(k);
      const uint32_t product = uint32_t(int32_t(a[k]) * int32_t(w[k * w_stride]));
      bits = sample_conditioned_bits(t, rs, s - product, product);
      if (!bits) continue;
    } else {
      bits = sample_event_bits(t, rs);
    }
    count_events(bits, protect, drop, counter);
    const bool skip = dropped(bits, protect, drop);
    const uint32_t flips = skip ? 0u : bits & ~protect;
    if (!flips && !skip) continue;
    sum_through(k);
    // Flipping bits b changes the value by +-2^b each: (s ^ flips) - s.
    const uint32_t change = skip ? 0u - uint32_t(int32_t(a[k]) * int32_t(w[k * w_stride])) : (s ^ flips) - s;
    d += change;
    s += change;
  }
  if (tile_end > 0) patch += finish_tile();
  return patch;
}

}  // namespace pyvs
