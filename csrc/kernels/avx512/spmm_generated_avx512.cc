// AVX-512 f32 spmm by code generated for the weights' pattern (see spmm.h, "Generated code").
// Register-blocked over output rows: a block of 28 output rows x 16 positions lives in zmm0-27;
// the block's nonzeros are visited column by column, each input vector loaded once (zmm28-31,
// rotating) and used by every nonzero of its column in the block, each weight an embedded-
// broadcast memory operand. Which accumulator a nonzero feeds is in the instruction, so the
// code is generated per weights: one chunk per (column panel, row block).
//
// Packed code reads a copy of the input made per tile and panel, one 16-position slice per
// vector ([v][k][16]): a chunk then reads 64 contiguous bytes per column from a 16 KiB slice that
// stays in L1 while every row block of the panel runs over it. Direct code reads the input where
// it is: each column's load carries the column's offset (col_off[k], known when the code is made)
// as its displacement from the vector's first input, masked to the vector's lanes (a vector's
// inputs are one contiguous run: DirectVectors). Copying took 30-45% of a layer whose columns
// feed few rows (a 3x3 conv of 64 channels, a 1x1 conv to 64) and it is the only thing direct
// code saves: it is what the conv ops run. Where each vector's first input lies at a lane known
// when the code is made (base_lane: a same-size conv over its padded planes), the columns'
// vectors are shifted out of whole lines (AlignedLines) instead of loads across two lines.
// Accumulators go to a per-thread block between panels; after the last panel each row block's
// epilogue runs right after its chunk, while its sums are in L1.
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "kernels/avx512/spmm_pack.h"
#include "kernels/avx512/vec_math.h"
#include "kernels/spmm.h"
#include "runtime/thread_pool.h"

namespace si {
namespace {

constexpr int kRowBlock = 28;    // accumulators zmm0-27
constexpr int kXRegs = 4;        // zmm28-31 hold input vectors, rotating
constexpr int kTileVectors = 8;  // 16-position vectors per tile
// Code per group of row blocks (see GeneratedCode::groups): measured on Zen 4, 32-64 KiB (the L1i and
// the op cache) run 1.3-1.5x faster than one group per panel when a panel holds more code; 16 KiB
// (half the L1i: the group stays there across the tile's vectors next to the driver's and the
// epilogue's code) beat 64 in A/Bs at batch 64 (two processes alternating, 2 cores): vgg16-pruned90
// +2.1/+3.5/+3.7%, resnet50-pruned90 +0.6/+0.7%; batch 1 +0.6% and +2.8%; 8 KiB alike, 32 between.
constexpr size_t kGroupCode = size_t(16) << 10;
// Direct code prefetches the next tile's input when its input spans more than this (2x L2).
constexpr int64_t kPrefetchInputBytes = int64_t(2) << 20;
// Code and weights of a layer past this (the L2) are prefetched a group ahead (CodeAhead).
constexpr size_t kPrefetchCodeBytes = size_t(1) << 20;

// The few instructions the chunks use (EVEX encodings; zmm numbers 0-31). ABI: rdi = the input
// slice (row k at 64 k bytes) or, direct, the vector's first input (row k at 4 col_off[k] bytes),
// rsi = the block's accumulators (row r at 64 r bytes), rdx = the chunk's weights in code order,
// rcx = direct: the vector's lane masks per column class (column k loads with mask k % classes,
// from k1 on).
struct Emitter {
  uint8_t* p;
  static uint8_t rbits(int a) { return uint8_t(((a & 8) ? 0 : 0x80) | ((a & 16) ? 0 : 0x10)); }
  void acc_move(int a, int r, bool store) {  // vmovups zmm_a, [rsi + 64 r] (or the store)
    const uint8_t b[] = {0x62, uint8_t(rbits(a) | 0x61), 0x7C, 0x48, uint8_t(store ? 0x11 : 0x10),
                         uint8_t(0x40 | ((a & 7) << 3) | 6), uint8_t(r)};
    put(b, sizeof b);
  }
  void zero(int a) {  // vpxord zmm_a, zmm_a, zmm_a
    const uint8_t hi = (a & 8) ? 0 : 1, top = (a & 16) ? 0 : 1;
    const uint8_t b[] = {0x62, uint8_t((hi << 7) | (top << 6) | (hi << 5) | (top << 4) | 0x01),
                         uint8_t(((~a & 15) << 3) | 0x05), uint8_t(0x40 | (top << 3)), 0xEF,
                         uint8_t(0xC0 | ((a & 7) << 3) | (a & 7))};
    put(b, sizeof b);
  }
  void load_x(int x, int k) {  // vmovups zmm_x, [rdi + 64 k]
    const uint8_t p0 = uint8_t(rbits(x) | 0x61);
    if (k < 128) {
      const uint8_t b[] = {0x62, p0, 0x7C, 0x48, 0x10, uint8_t(0x40 | ((x & 7) << 3) | 7), uint8_t(k)};
      put(b, sizeof b);
    } else {
      const int32_t d = k * 64;
      const uint8_t b[] = {0x62, p0, 0x7C, 0x48, 0x10, uint8_t(0x80 | ((x & 7) << 3) | 7)};
      put(b, sizeof b);
      put(&d, 4);
    }
  }
  void mask_from_rcx(int k, int i) {  // kmovw k_k, word [rcx + 2 i]
    const uint8_t b[] = {0xC5, 0xF8, 0x90, uint8_t(0x40 | (k << 3) | 1), uint8_t(2 * i)};
    put(b, sizeof b);
  }
  void load_x_at(int x, int32_t disp, int k) {  // vmovups zmm_x{k_k}{z}, [rdi + disp]
    const uint8_t p0 = uint8_t(rbits(x) | 0x61), p2 = uint8_t(0xC8 | k);
    if (disp % 64 == 0 && disp / 64 >= -128 && disp / 64 < 128) {  // disp8, scaled by the vector's 64 bytes
      const uint8_t b[] = {0x62, p0, 0x7C, p2, 0x10, uint8_t(0x40 | ((x & 7) << 3) | 7), uint8_t(int8_t(disp / 64))};
      put(b, sizeof b);
    } else {
      const uint8_t b[] = {0x62, p0, 0x7C, p2, 0x10, uint8_t(0x80 | ((x & 7) << 3) | 7)};
      put(b, sizeof b);
      put(&disp, 4);
    }
  }
  // valignd zmm_d{k_k}{z}, zmm_hi, zmm_lo, shift: lanes [shift, shift + 16) of the 32-lane hi:lo.
  void align_lanes(int d, int hi, int lo, int k, int shift) {
    const uint8_t b[] = {0x62,
                         uint8_t(((d & 8) ? 0 : 0x80) | ((lo & 16) ? 0 : 0x40) | ((lo & 8) ? 0 : 0x20) |
                                 ((d & 16) ? 0 : 0x10) | 0x03),
                         uint8_t(((~hi & 15) << 3) | 0x05), uint8_t(0xC0 | ((hi & 16) ? 0 : 0x08) | k), 0x03,
                         uint8_t(0xC0 | ((d & 7) << 3) | (lo & 7)), uint8_t(shift)};
    put(b, sizeof b);
  }
  void fma(int a, int x, int idx) {  // vfmadd231ps zmm_a, zmm_x, [rdx + 4 idx]{1to16}
    const uint8_t b[] = {0x62, uint8_t(rbits(a) | 0x62), uint8_t(((~x & 15) << 3) | 0x05),
                         uint8_t(0x50 | ((x & 16) ? 0 : 0x08)), 0xB8, uint8_t(0x40 | ((a & 7) << 3) | 2),
                         uint8_t(int8_t(idx))};
    put(b, sizeof b);
  }
  void bump_weights() {  // add rdx, 512
    const uint8_t b[] = {0x48, 0x81, 0xC2, 0x00, 0x02, 0x00, 0x00};
    put(b, sizeof b);
  }
  void ret() { *p++ = 0xC3; }
  void put(const void* b, size_t n) {
    std::memcpy(p, b, n);
    p += n;
  }
};

// masks: direct code's lane masks per column class (kSpmmMaxColumnClasses), else unused.
using Chunk = void (*)(const float* x, float* acc, const float* w, const uint16_t* masks);

// The first `lanes` (1-16) lanes of a vector.
inline __mmask16 lanes_mask(int lanes) { return static_cast<__mmask16>((1u << lanes) - 1); }

}  // namespace

// Brings the code and weights a group of chunks runs next into L2 while the current group runs,
// a share of the lines before each chunk call. A layer's code past L2 is fetched again on every
// tile, and straight-line code gets little from the instruction prefetchers: without this the
// front end waits on L3 for the lines of a large layer's chunks (batch 64 on 2 Zen 4 cores:
// resnet50-pruned95 and vgg16-pruned90 2-2.5% faster, resnet50-pruned90 with every layer's code
// kept 4.5%; layers whose code stays in L2 gained nothing, and are left alone).
struct CodeAhead {
  std::pair<const char*, size_t> ranges[2] = {{nullptr, 0}, {nullptr, 0}};  // code, then weights
  size_t per_call = 0;
  int range = 0;
  size_t at = 0;
  void step() {
    for (size_t j = 0; j < per_call && range < 2; ++j) {
      _mm_prefetch(ranges[range].first + at, _MM_HINT_T1);
      at += 64;
      if (at >= ranges[range].second) ++range, at = 0;
    }
  }
};

// Executable memory the generator writes once and then runs: mapped read-write while emitting,
// read-execute after (never both), the pages past the code unmapped.
class GeneratedCode {
 public:
  GeneratedCode() = default;
  GeneratedCode(const GeneratedCode&) = delete;
  GeneratedCode& operator=(const GeneratedCode&) = delete;
  ~GeneratedCode() {
    if (mem_) munmap(mem_, cap_);
  }
  uint8_t* allocate(size_t bytes) {
    cap_ = (bytes + kPage - 1) / kPage * kPage;
    void* p = mmap(nullptr, cap_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      cap_ = 0;
      throw std::runtime_error("spmm (generated): cannot map " + std::to_string(bytes) + " bytes of code memory");
    }
    mem_ = static_cast<uint8_t*>(p);
    return mem_;
  }
  void seal(size_t used) {
    code_size = used;
    const size_t keep = std::max(kPage, (used + kPage - 1) / kPage * kPage);
    if (keep < cap_ && munmap(mem_ + keep, cap_ - keep) == 0) cap_ = keep;
    if (mprotect(mem_, cap_, PROT_READ | PROT_EXEC) != 0)
      throw std::runtime_error("spmm (generated): cannot make code memory executable");
  }
  const uint8_t* data() const { return mem_; }
  // Code and weights of the layer: what must come from past L2 on every tile when it is larger.
  size_t bytes_total() const { return code_size + vals.size() * sizeof(float); }
  // Prefetches of chunks [c0, c1)'s code and weights, spread over `calls` chunk calls.
  CodeAhead ahead(size_t c0, size_t c1, size_t calls) const {
    CodeAhead r;
    if (c0 >= c1 || calls == 0) return r;
    const size_t code_end = c1 < code_off.size() ? code_off[c1] : code_size;
    const size_t val_end = c1 < val_off.size() ? val_off[c1] : vals.size();
    r.ranges[0] = {reinterpret_cast<const char*>(mem_) + code_off[c0], code_end - code_off[c0]};
    r.ranges[1] = {reinterpret_cast<const char*>(vals.data() + val_off[c0]), (val_end - val_off[c0]) * sizeof(float)};
    const size_t lines = (r.ranges[0].second + r.ranges[1].second) / 64 + 2;
    r.per_call = (lines + calls - 1) / calls;
    return r;
  }

  std::vector<uint32_t> code_off;  // per chunk (panel-major, then row block)
  std::vector<uint32_t> val_off;   // per chunk: its first weight in vals
  std::vector<float> vals;         // the weights in code order
  int blocks = 0;
  size_t code_size = 0;  // bytes of code emitted
  // Row blocks run in groups, all vectors of a tile per group, so that a group's code stays in
  // the caches while the vectors reuse it: each group's first block, then `blocks` (the same
  // cut in every panel).
  std::vector<uint32_t> group_start;
  bool direct = false;  // the chunks read the input in place (see the top of this file)
  int classes = 1;      // direct: column k loads under lane mask class k % classes
  // Direct code whose vectors' first inputs all lie at this lane of a 64-byte line (0-15), -1 when
  // unknown: the chunks then load whole lines and shift them into place (AlignedLines), and are
  // called with the line's start.
  int base_lane = -1;
  // Direct code over an input past L2 (kPrefetchInputBytes): the distinct 16-float lines of
  // input a vector reads (col_off rounded down), prefetched for the next tile while one runs.
  // A 3x3 conv's vector reads ~3 x channels lines of rows far apart, more streams than the
  // hardware prefetchers follow (vgg16-pruned90 batch 64: 3-4% faster; on maps in L2 it only
  // costs, so smaller inputs leave this empty).
  std::vector<int32_t> input_runs;

 private:
  static constexpr size_t kPage = 4096;
  uint8_t* mem_ = nullptr;
  size_t cap_ = 0;
};

// Direct code's input vectors from whole 64-byte lines: a vector that does not start on a line
// (a 3x3 conv's taps one float apart, rows of 56 or 28 floats) loaded as such crosses two lines,
// and on Zen 4 such loads cost a quarter of the FMA rate of the code (measured in a loop of 3 per
// 9 FMAs: 88 GFLOP/s against 117 with aligned loads). Column k's inputs start at lane
// (base_lane + col_off[k]) % 16 of their first line: its lines are loaded (two when the lane is not
// 0) and valignd shifts the vector out of them under the column's lane mask. The last two lines
// stay in zmm30-31, so the taps of one input row (consecutive columns) mostly load one new line
// each; the vectors alternate between zmm28 and zmm29.
struct AlignedLines {
  int64_t line[2] = {-1, -1};  // the byte displacement of the line in zmm30 / zmm31
  int last = 1;                // the slot loaded last
  // The register holding line `d` (bytes from rdi), loaded into the other slot than `keep`'s.
  int get(Emitter& e, int64_t d, int keep) {
    for (int i = 0; i < 2; ++i)
      if (line[i] == d) return 30 + i;
    int slot = 1 - last;
    if (keep >= 30) slot = 1 - (keep - 30);
    line[slot] = d;
    last = slot;
    e.load_x(30 + slot, static_cast<int>(d / 64));
    return 30 + slot;
  }
  // Vector register `x` = the 16 floats from `off` floats past rdi under lane mask k_k.
  void vector(Emitter& e, int x, int64_t off, int k) {
    const int64_t d = off / 16 * 64;
    const int shift = static_cast<int>(off % 16);
    const int lo = get(e, d, -1);
    const int hi = shift ? get(e, d + 64, lo) : lo;
    e.align_lanes(x, hi, lo, k, shift);
  }
};

// Emits every chunk of W into `jc` (direct: reading the input in place).
static void generate_chunks(const SparseWeights& W, GeneratedCode& jc, bool direct, int classes) {
  const int32_t* col_off = W.col_off();
  const int M = W.M(), P = W.panels(), pk = W.panel_k();
  const bool lines = direct && jc.base_lane >= 0;
  jc.blocks = (M + kRowBlock - 1) / kRowBlock;
  const size_t chunks = size_t(P) * jc.blocks, nnz = W.nnz();
  // Bound: per nonzero an FMA (7 B) and at most one input load (10 B; from whole lines: two loads
  // and a valignd, 27 B), per 128 weights a bump, per chunk the lane masks, the accumulators in
  // (or zeroed) and out and a ret.
  const size_t bound = nnz * (lines ? 34 : 17) + (nnz / 128 + chunks) * 7 +
                       chunks * (5 * classes + 2 * 7 * kRowBlock + 1);
  if (bound > (size_t(1) << 32)) throw std::invalid_argument("spmm (generated): the weights need more than 4 GiB of code");
  uint8_t* base = jc.allocate(bound + 8);
  Emitter e{base};
  // vfmadd231ps zmm_r, zmm_(28 + xs), [rdx + 4 idx]{1to16} with idx = 0, per accumulator and
  // input register.
  uint64_t fma_template[kRowBlock][kXRegs];
  for (int r = 0; r < kRowBlock; ++r)
    for (int xs = 0; xs < kXRegs; ++xs) {
      uint8_t b[8] = {};
      Emitter t{b};
      t.fma(r, 32 - kXRegs + xs, 0);
      std::memcpy(&fma_template[r][xs], b, 8);
    }
  jc.code_off.resize(chunks);
  jc.val_off.resize(chunks);
  jc.vals.resize(nnz);
  float* vals = jc.vals.data();
  size_t nv = 0;
  std::vector<int32_t> start(size_t(pk) + 1), fill_at(static_cast<size_t>(pk));
  std::vector<uint8_t> row_of(nnz ? size_t(kRowBlock) * pk : 0);
  std::vector<float> val_of(row_of.size());
  const int32_t* rs = W.row_start();
  const uint16_t* cols = W.cols();
  const uint8_t* cols8 = W.cols_in_panel();
  const float* values = W.values();
  for (int p = 0; p < P; ++p) {
    const int k0 = p * pk, kn = std::min(pk, W.K() - k0);
    // Nonzero i's column within the panel.
    auto in_panel = [&](int32_t i) { return W.narrow() ? int(cols8[i]) : cols[i] - k0; };
    for (int b = 0; b < jc.blocks; ++b) {
      const size_t c = size_t(p) * jc.blocks + b;
      jc.code_off[c] = static_cast<uint32_t>(e.p - base);
      jc.val_off[c] = static_cast<uint32_t>(nv);
      const int m0 = b * kRowBlock, rows = std::min(kRowBlock, M - m0);
      const int32_t* seg = rs + size_t(p) * M + m0;
      // Counting sort of the block's nonzeros by column (rows ascending within a column).
      std::fill(start.begin(), start.begin() + kn + 1, 0);
      for (int32_t i = seg[0]; i < seg[rows]; ++i) ++start[in_panel(i) + 1];
      for (int k = 0; k < kn; ++k) start[k + 1] += start[k];
      std::copy(start.begin(), start.begin() + kn, fill_at.begin());
      for (int r = 0; r < rows; ++r)
        for (int32_t i = seg[r]; i < seg[r + 1]; ++i) {
          const int32_t j = fill_at[in_panel(i)]++;
          row_of[j] = static_cast<uint8_t>(r);
          val_of[j] = values[i];
        }
      if (direct)
        for (int i = 0; i < classes; ++i) e.mask_from_rcx(1 + i, i);
      for (int r = 0; r < rows; ++r) p == 0 ? e.zero(r) : e.acc_move(r, r, false);
      int xi = 0, idx = 0;
      AlignedLines cache;
      for (int k = 0; k < kn; ++k) {
        if (start[k] == start[k + 1]) continue;
        const int xs = xi++ % (lines ? 2 : kXRegs);
        if (lines)
          cache.vector(e, 32 - kXRegs + xs, jc.base_lane + int64_t(col_off[k0 + k]), 1 + (k0 + k) % classes);
        else if (direct)
          e.load_x_at(32 - kXRegs + xs, int32_t(4 * int64_t(col_off[k0 + k])), 1 + (k0 + k) % classes);
        else
          e.load_x(32 - kXRegs + xs, k);
        for (int32_t j = start[k]; j < start[k + 1]; ++j) {
          if (idx == 128) {
            e.bump_weights();
            idx = 0;
          }
          // The FMA's 7 bytes as one 8-byte store (the buffer has slack past the last one).
          const uint64_t ins = fma_template[row_of[j]][xs] | (uint64_t(uint8_t(idx++)) << 48);
          std::memcpy(e.p, &ins, 8);
          e.p += 7;
          vals[nv++] = val_of[j];
        }
      }
      for (int r = 0; r < rows; ++r) e.acc_move(r, r, true);
      e.ret();
    }
  }
  const size_t used = size_t(e.p - base);
  // Groups of consecutive row blocks of at most kGroupCode bytes of code (at least one block),
  // the same cut for every panel (the largest panel's chunks decide).
  std::vector<uint32_t> cut{0};
  size_t run = 0;
  for (int b = 0; b < jc.blocks; ++b) {
    size_t worst = 0;
    for (int p = 0; p < P; ++p) {
      const size_t c = size_t(p) * jc.blocks + b;
      const size_t end = c + 1 < chunks ? jc.code_off[c + 1] : used;
      worst = std::max(worst, end - jc.code_off[c]);
    }
    if (run > 0 && run + worst > kGroupCode) {
      cut.push_back(uint32_t(b));
      run = 0;
    }
    run += worst;
  }
  cut.push_back(uint32_t(jc.blocks));
  jc.group_start = std::move(cut);
  jc.seal(used);
}

namespace {

// The tile's input rows [k0, k1) for positions [q, q + w) into slices dst[v][k - k0][16]
// (row stride 16 floats, slice stride pk x 16), lanes past w zero. `a` gives the input and
// its map (SpmmArgs: shared with the row kernels' helpers).
void pack_slices(const SpmmArgs& a, int64_t q, int w, int k0, int k1, float* dst, int pk) {
  const int nv = (w + 15) / 16;
  const int64_t slice = int64_t(pk) * 16;
  if (a.map.row_len == 0) {
    const bool more = q + w < a.q1;  // the next tile: its runs prefetched
    const int next_w = static_cast<int>(std::min<int64_t>(a.q1 - q - w, int64_t(16) * kTileVectors));
    const float* x = a.in + q;
    for (int k = k0; k < k1; ++k) {
      const float* src = x + a.col_off[k];
      if (more) spmm_prefetch_run(src + w, next_w);
      float* d = dst + int64_t(k - k0) * 16;
      for (int v = 0; v < nv; ++v) {
        _mm512_store_ps(d + v * slice, _mm512_maskz_loadu_ps(lanes_mask(std::min(16, w - 16 * v)), src + 16 * v));
      }
    }
    return;
  }
  avx512::spmm_pack_mapped(a, q, w, k0, k1, dst, 16, slice, 16 * kTileVectors);
}

// Each row's epilogue asks for the output (and residual) line this many positions on: the
// block's rows are as many store streams into planes far apart, more than the hardware
// prefetchers follow, and the rows of the next vectors write those lines a chunk or two later
// (vgg16-pruned90 batch 64 on 2 Zen 4 cores: 2-4% faster with 32 or 64, 2% with 16;
// resnet50-pruned90 unchanged). A prefetch past the end of a buffer is harmless.
constexpr int64_t kEpiloguePrefetchFloats = 32;

// act(acc + bias + residual) of rows [m0, m0 + rows) x lanes [0, lanes) of vector v at q.
void epilogue(const SpmmArgs& a, const float* acc, int m0, int rows, int64_t q, int lanes) {
  const __mmask16 lm = lanes_mask(lanes);
  const float* const bias = a.bias;
  const float* const residual = a.residual ? a.residual + q : nullptr;
  float* const out = a.out + q;
  const int64_t ldo = a.ldo;
  avx512::with_activation(a.act, a.alpha, a.beta, [&](const auto& act) {
    for (int r = 0; r < rows; ++r) {
      const int64_t m = m0 + r;
      __builtin_prefetch(out + m * ldo + kEpiloguePrefetchFloats, 1, 3);
      if (residual) __builtin_prefetch(residual + m * ldo + kEpiloguePrefetchFloats, 0, 3);
      __m512 s = _mm512_add_ps(_mm512_load_ps(acc + 16 * r), _mm512_set1_ps(bias ? bias[m] : 0.f));
      if (residual) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(lm, residual + m * ldo));
      _mm512_mask_storeu_ps(out + m * ldo, lm, act(s));
    }
  });
}

// One tile of nv vectors (vector v: the code's input x[v], its first position q[v] and its
// lanes) over the row blocks [b0, b1): per panel, prepare(p) (packed code: the copy), then every
// group of row blocks on each vector of the tile; after the last panel each block's epilogue.
struct NoStep {
  void operator()() const {}
};
template <class Prepare, class Step = NoStep>
void run_tile(const GeneratedCode& jc, const SpmmArgs& a, int M, int nv, const float* const* x, const int64_t* q,
              const int* lanes, const uint16_t (*masks)[kSpmmMaxColumnClasses], uint32_t b0, uint32_t b1, float* acc,
              const Prepare& prepare, const Step& step = Step()) {
  const int P = a.panels;
  const int64_t mpad = int64_t(jc.blocks) * kRowBlock;
  const uint8_t* code = jc.data();
  const size_t ngroups = jc.group_start.size() - 1;
  const bool fetch_ahead = jc.bytes_total() > kPrefetchCodeBytes;
  for (int p = 0; p < P; ++p) {
    prepare(p);
    const uint32_t* groups = jc.group_start.data();
    for (size_t gi = 0; gi < ngroups; ++gi) {
      const uint32_t g0 = std::max(groups[gi], b0), g1 = std::min(groups[gi + 1], b1);
      CodeAhead ahead;
      if (fetch_ahead && g0 < g1) {
        // The group after this one (the next panel's first, past the last: the next tile's).
        const size_t gn = gi + 1 < ngroups ? gi + 1 : 0;
        const int pn = gi + 1 < ngroups ? p : (p + 1 < P ? p + 1 : 0);
        ahead = jc.ahead(size_t(pn) * jc.blocks + std::max(groups[gn], b0),
                         size_t(pn) * jc.blocks + std::min(groups[gn + 1], b1), size_t(nv) * (g1 - g0));
      }
      for (int v = 0; v < nv; ++v) {
        float* acc_v = acc + v * mpad * 16;
        for (uint32_t b = g0; b < g1; ++b) {
          const size_t c = size_t(p) * jc.blocks + b;
          float* acc_b = acc_v + int64_t(b) * kRowBlock * 16;
          step();
          ahead.step();
          reinterpret_cast<Chunk>(code + jc.code_off[c])(x[v], acc_b, jc.vals.data() + jc.val_off[c], masks[v]);
          if (p + 1 == P)
            epilogue(a, acc_b, int(b) * kRowBlock, std::min(kRowBlock, M - int(b) * kRowBlock), q[v], lanes[v]);
        }
      }
    }
  }
}

// Packed code over positions [a.q0, a.q1): tiles of kTileVectors consecutive vectors, packed
// per panel.
void run_packed(const SparseWeights& W, const GeneratedCode& jc, const SpmmArgs& a, uint32_t b0, uint32_t b1,
                float* pack, float* acc) {
  const int pk = W.panel_k();
  const float* x[kTileVectors];
  int64_t q[kTileVectors];
  int lanes[kTileVectors];
  for (int v = 0; v < kTileVectors; ++v) x[v] = pack + int64_t(v) * pk * 16;
  for (int64_t q0 = a.q0; q0 < a.q1; q0 += 16 * kTileVectors) {
    const int w = static_cast<int>(std::min<int64_t>(16 * kTileVectors, a.q1 - q0));
    const int nv = (w + 15) / 16;
    for (int v = 0; v < nv; ++v) {
      q[v] = q0 + 16 * v;
      lanes[v] = std::min(16, w - 16 * v);
    }
    static const uint16_t unused[kTileVectors][kSpmmMaxColumnClasses] = {};  // packed code reads no masks
    run_tile(jc, a, W.M(), nv, x, q, lanes, unused, b0, b1, acc, [&](int p) {
      pack_slices(a, q0, w, p * pk, std::min(W.K(), (p + 1) * pk), pack, pk);
    });
  }
}

// Direct code's vectors: each run of positions whose inputs follow each other cut into
// ceil(run_len / 16) vectors, the last with the run's remaining lanes, so that a vector's inputs
// are one contiguous run. A run is the whole range without a map; with one, a whole image when
// its rows follow each other in the input as in the output (row_stride == row_len: a same-size
// conv over planes with their padding rows; direct_masks clips the taps that cross a row's edge,
// row by row), else a row. Whole images fill the vectors that rows of 14, 28 or 56 positions
// leave an eighth empty (resnet50's 3x3 convs of 64 and 128 channels 10-12% faster, one core).
// Vector i: its first position, its input and its lanes.
struct DirectVectors {
  int64_t run_len, per_run, count;
  const SpmmInputMap* map;
  DirectVectors(int64_t Q, const SpmmInputMap* m)
      : run_len(!m ? Q : m->row_stride == m->row_len && Q % m->img_len == 0 ? m->img_len : m->row_len),
        per_run((run_len + 15) / 16),
        count(Q / run_len * per_run),
        map(m) {}
  // Vector i's first position in its run.
  int64_t start(int64_t i) const { return (i % per_run) * 16; }
  void at(int64_t i, int64_t& q, int64_t& src, int& lanes) const {
    const int64_t p0 = start(i);
    q = i / per_run * run_len + p0;
    lanes = static_cast<int>(std::min<int64_t>(16, run_len - p0));
    if (!map) {
      src = q;
      return;
    }
    const int64_t img = q / map->img_len, r = (q % map->img_len) / map->row_len;
    src = img * map->img_stride + r * map->row_stride + q % map->row_len;
  }
};

// Vector i's lane masks per column class (column k: class k % classes): its lanes, and with the
// map's implicit padding (horizontal only: see GeneratedSpmm::run) those whose pixel, shifted by
// the class's tap column, lies in its row.
void direct_masks(const GeneratedCode& jc, const SpmmInputMap& map, const DirectVectors& dv, int64_t i, int lanes,
                  uint16_t* masks) {
  if (map.taps() == 0) {
    std::fill(masks, masks + jc.classes, static_cast<uint16_t>(lanes_mask(lanes)));
    return;
  }
  const int64_t c0 = dv.start(i) % map.row_len;  // the vector's first column in its row
  for (int s = 0; s < jc.classes; ++s) {
    // Row by row over the vector's lanes: lanes l0 + j (j < n, the row's columns c + j) whose
    // column shifted by the tap, c + j + shift, lies in [0, in_w).
    const int64_t shift = int64_t(s) * map.dil_w - map.pad_left;
    uint32_t m = 0;
    for (int64_t l0 = 0, c = c0; l0 < lanes; l0 += map.row_len - c, c = 0) {
      const int64_t n = std::min<int64_t>(lanes - l0, map.row_len - c);
      const int64_t j0 = std::clamp<int64_t>(-shift - c, 0, n);
      const int64_t j1 = std::clamp<int64_t>(map.in_w - shift - c, j0, n);
      m |= (lanes_mask(static_cast<int>(j1)) & ~lanes_mask(static_cast<int>(j0))) << l0;
    }
    masks[s] = static_cast<uint16_t>(m);
  }
}

// Direct code over vectors [v0, v1): tiles of kTileVectors of them.
void run_direct(const GeneratedCode& jc, const SpmmArgs& a, int M, const DirectVectors& dv, int64_t v0, int64_t v1,
                uint32_t b0, uint32_t b1, float* acc) {
  const float* x[kTileVectors];
  int64_t q[kTileVectors], src;
  int lanes[kTileVectors];
  uint16_t masks[kTileVectors][kSpmmMaxColumnClasses] = {};
  const int32_t* runs = jc.input_runs.data();
  const int64_t nruns = int64_t(jc.input_runs.size());
  const int64_t calls = int64_t(a.panels) * kTileVectors * (b1 - b0);
  const int64_t lane = std::max(jc.base_lane, 0);  // code from whole lines: called with the line
  for (int64_t t = v0; t < v1; t += kTileVectors) {
    const int nv = static_cast<int>(std::min<int64_t>(kTileVectors, v1 - t));
    for (int v = 0; v < nv; ++v) {
      dv.at(t + v, q[v], src, lanes[v]);
      x[v] = a.in + src - lane;
      direct_masks(jc, a.map, dv, t + v, lanes[v], masks[v]);
    }
    // The next tile's input lines, a slice before each chunk (see GeneratedCode::input_runs).
    const int nn = nruns ? static_cast<int>(std::clamp<int64_t>(v1 - t - kTileVectors, 0, kTileVectors)) : 0;
    const float* xn[kTileVectors];
    for (int v = 0; v < nn; ++v) {
      int64_t qv;
      int ln;
      dv.at(t + kTileVectors + v, qv, src, ln);
      xn[v] = a.in + src;
    }
    // Run r of vector v, v fastest; per_call of them before each chunk.
    const int64_t per_call = (nruns * nn + calls - 1) / calls;
    int64_t r = 0;
    int v = 0;
    run_tile(jc, a, M, nv, x, q, lanes, masks, b0, b1, acc, [](int) {}, [&] {
      for (int64_t j = 0; j < per_call && r < nruns; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(xn[v] + runs[r]), _MM_HINT_T0);
        if (++v == nn) v = 0, ++r;
      }
    });
  }
}

}  // namespace

bool GeneratedSpmm::can_read_in_place(const SparseWeights& W) {
  // A load's displacement is 4 col_off[k] bytes as an int32 (from whole lines: up to two lines more).
  return W.max_col_offset() <= (int64_t(INT32_MAX) - 192) / 4;
}

// Whether every direct vector of a run over Q positions of `in` (with `map`) starts at lane
// `lane` of a 64-byte line: `in` there, and each vector's offset (DirectVectors) a multiple of 16.
static bool vectors_start_at_lane(const float* in, int64_t Q, const SpmmInputMap* map, int lane) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(in);
  if (a % sizeof(float) != 0 || int(a / sizeof(float) % 16) != lane) return false;
  if (!map) return true;
  const DirectVectors dv(Q, map);
  const bool images = (Q + map->img_len - 1) / map->img_len > 1;
  const bool rows = dv.run_len == map->row_len && map->img_len / map->row_len > 1;
  return !(images && map->img_stride % 16 != 0) && !(rows && map->row_stride % 16 != 0);
}

GeneratedSpmm::GeneratedSpmm(const SparseWeights& W, bool in_place, int column_classes, int base_lane)
    : W_(W), code_(std::make_unique<GeneratedCode>()) {
  if (column_classes < 1 || column_classes > kSpmmMaxColumnClasses)
    throw std::invalid_argument("spmm (generated): column_classes must be in [1, " +
                                std::to_string(kSpmmMaxColumnClasses) + "], got " + std::to_string(column_classes));
  if (base_lane < -1 || base_lane > 15)
    throw std::invalid_argument("spmm (generated): base_lane must be -1 (unknown) or a lane in [0, 15], got " +
                                std::to_string(base_lane));
  if (in_place && !can_read_in_place(W))
    throw std::invalid_argument("spmm (generated): input offsets past 2 GiB cannot be read in place");
  if (W.isa() != Isa::kAvx512)
    throw std::invalid_argument(std::string("spmm (generated): the weights are compressed for ") + isa_name(W.isa()) +
                                ", expected avx512");
  if (W.released()) throw std::invalid_argument("spmm (generated): the weights' nonzeros were released");
  code_->classes = in_place ? column_classes : 1;
  code_->base_lane = in_place ? base_lane : -1;
  if (W.K() > 0 && W.M() > 0) generate_chunks(W, *code_, in_place, code_->classes);
  code_->direct = in_place;
  if (in_place && W.max_col_offset() * int64_t(sizeof(float)) > kPrefetchInputBytes) {
    std::vector<int32_t>& r = code_->input_runs;
    for (int k = 0; k < W.K(); ++k) r.push_back(W.col_off()[k] / 16 * 16);
    std::sort(r.begin(), r.end());
    r.erase(std::unique(r.begin(), r.end()), r.end());
  }
}

bool GeneratedSpmm::in_place() const { return code_->direct; }

GeneratedSpmm::~GeneratedSpmm() = default;

size_t GeneratedSpmm::bytes() const {
  return code_->code_size + code_->vals.size() * sizeof(float) + code_->code_off.size() * 2 * sizeof(uint32_t) +
         code_->input_runs.size() * sizeof(int32_t);
}

void GeneratedSpmm::run(const float* in, int64_t Q, float* out, int64_t ldo, const Epilogue& ep, ThreadPool* pool,
                         const SpmmInputMap* map) const {
  const SparseWeights& W = W_;
  if (map) check_map(*map, W, "spmm (generated)");
  if (map && map->taps() > 0 && code_->direct &&
      (map->taps_w != code_->classes || map->pad_top != 0 ||
       map->img_len / map->row_len + int64_t(map->taps_h - 1) * map->dil_h > map->in_h))
    throw std::invalid_argument(
        "spmm (generated): code reading in place takes implicit padding only along rows (the map's taps_w equal "
        "to the code's column classes, " + std::to_string(code_->classes) +
        ", and every tap's row inside the planes: pad_top 0, the padding rows in the input)");
  if (Q <= 0 || W.M() <= 0) return;
  if (code_->direct && code_->base_lane >= 0 && W.K() > 0 && !vectors_start_at_lane(in, Q, map, code_->base_lane))
    throw std::invalid_argument(
        "spmm (generated): the code loads whole 64-byte lines for vectors that start at lane " +
        std::to_string(code_->base_lane) + " of a line; this input (or its map's row or image strides, not "
        "multiples of 16 floats) puts them elsewhere");
  SpmmArgs base{};
  base.col_off = W.col_off();
  base.in = in;
  base.map = map ? *map : SpmmInputMap{0, 0, 0, 0};
  base.out = out;
  base.ldo = ldo;
  base.bias = ep.bias;
  base.residual = ep.residual;
  base.act = ep.act;
  base.alpha = ep.alpha;
  base.beta = ep.beta;
  if (W.K() == 0) {  // no columns: the epilogue of zero sums
    alignas(64) const float z[16 * kRowBlock] = {};
    for (int64_t q = 0; q < Q; q += 16)
      for (int m0 = 0; m0 < W.M(); m0 += kRowBlock)
        epilogue(base, z, m0, std::min(kRowBlock, W.M() - m0), q, static_cast<int>(std::min<int64_t>(16, Q - q)));
    return;
  }
  base.panels = W.panels();
  const int blocks = code_->blocks;
  const int threads = pool ? std::min(pool->num_threads(), blocks) : 1;
  const DirectVectors dv(Q, map);
  // Tiles of kTileVectors vectors: consecutive positions (packed), or cut at the map's rows.
  const int64_t tiles = code_->direct ? (dv.count + kTileVectors - 1) / kTileVectors
                                      : (Q + 16 * kTileVectors - 1) / (16 * kTileVectors);
  const size_t pack_floats = size_t(kTileVectors) * W.panel_k() * 16;
  const size_t acc_floats = size_t(kTileVectors) * blocks * kRowBlock * 16;
  // At least two tiles per thread: each thread its block of tiles (the same thread for the same
  // positions layer after layer, as in spmm_f32); fewer (a small map, one image): each thread its
  // share of the row blocks over every tile (packed: packing the input itself).
  const bool by_rows = tiles < 2 * threads;
  auto part = [&](size_t t) {
    int64_t t0 = 0, t1 = tiles;
    uint32_t b0 = 0, b1 = uint32_t(blocks);
    if (by_rows) {
      b0 = uint32_t(int64_t(t) * blocks / threads);
      b1 = uint32_t((int64_t(t) + 1) * blocks / threads);
    } else {
      t0 = int64_t(t) * tiles / threads;
      t1 = (int64_t(t) + 1) * tiles / threads;
    }
    if (t0 >= t1 || b0 >= b1) return;
    float* acc = spmm_thread_buffer<1>(acc_floats);
    if (code_->direct)
      return run_direct(*code_, base, W.M(), dv, t0 * kTileVectors, std::min(dv.count, t1 * kTileVectors), b0, b1,
                        acc);
    SpmmArgs a = base;
    a.q0 = t0 * 16 * kTileVectors;
    a.q1 = std::min(Q, t1 * 16 * kTileVectors);
    run_packed(W, *code_, a, b0, b1, spmm_thread_buffer<0>(pack_floats), acc);
  };
  if (threads > 1)
    pool->parallel_for_static(size_t(threads), part);
  else
    part(0);
}

}  // namespace si
