// f32 SPARSE x DENSE family (spmm): out[M x Q] = epilogue(W[M x K] (sparse) * In), where input
// row k is a run of Q contiguous floats at `in + col_offset[k]` (channel-major activations:
// spatial positions x batch, or tokens). XNNPACK's f32-spmm idea, widened to AVX2/AVX-512: the
// kernel vectorises over Q and, per nonzero weight, broadcasts it and FMAs it against MR
// contiguous input positions.
//
// Variants (one list, kSpmmVariants below; bindings, tests and benchmarks iterate over it):
//   portable  plain C++ loops over a 64-position tile (compiler-vectorised), the reference
//   avx2      MR = 32 positions (4 ymm) x 2 nonzeros in flight (8 accumulators)
//   avx512    MR = 64 positions (4 zmm) x 1 nonzero at a time (4 accumulators)
// Q edges: 32/16-wide (AVX-512) / 16/8-wide (AVX2) remainder tiles, last vector masked.
// Q == 1 (a linear layer on one token) runs as a sparse matrix-vector product instead: 16 (8)
// nonzeros per step with their inputs gathered, one horizontal sum per row.
// Besides them, GeneratedSpmm (below, AVX-512): code generated for one weight matrix, faster
// where its input vectors can be reused across output rows, at ~15-18 bytes per nonzero.
//
// Storage, 6 bytes per nonzero: the nonzeros as two parallel arrays (SoA), float values and
// uint16 column indices k, plus a per-weights table col_off[K] (int32 element offset into `in` of
// input row k). For the AVX-512 kernel, whose panels are 256 columns, 5: the column within its
// panel as a uint8 (SparseWeights::narrow; the kernel moves its input pointer to the panel's first
// row instead). A byte per nonzero is 1.2% of the dense weights at 90% sparsity: room under the
// weight budget for generated code on more layers. Columns are cut into panels of panel_k
// (spmm_panel_k) and the nonzeros stored panel by panel, row by row within a panel: int32 segment starts
// (panels x M + 1), and per-row nonzero counts for load balance. The kernel reads
// `in + col_off[col[i]]` (the table is K x 4 bytes: L1-resident) and broadcasts val[i]. Hence
// K <= kSpmmMaxK (65536) and nnz <= 2^31 - 1 (std::invalid_argument otherwise); callers keep
// wider layers dense. Rescaling the offsets (scaled_offsets) only touches the table.
//
// Panels: with one panel a tile's input slice (K x tile floats) is read once per nonzero from
// wherever it fits; a wide K (a 3x3 conv's 9 x channels, a transformer's 3072) streams it from
// L2 at a rate well below one vector load per cycle (Zen 4, one core: K = 3072 at 48 GFLOP/s
// against 57 at 768). So a tile with several panels is computed panel by panel: the panel's
// input rows (panel_k x tile floats, 64 KiB) packed into the per-thread buffer, every row's
// partial sums kept in a per-thread block (M x tile floats) between panels, the epilogue
// applied after the last. Weights for one position only (Q == 1) keep one panel.
//
// Driver (spmm.cc): with at least one tile per thread, each thread takes one fixed block of
// positions (static scheduling: the same thread for the same positions layer after layer);
// otherwise tasks of (Q block x row block), row blocks balanced by nnz (binary search on the
// row counts), scheduled dynamically. A task walks its Q block tile by tile and, per tile and
// panel, sweeps its rows: the input slice stays in L1/L2 while the rows reuse it. Epilogue
// (bias, residual, activation) in the store; residual may be `out` itself. Small problems stay
// on the caller's thread.
//
// Alignment: the ISA kernels load whole vectors of an input row per nonzero, so a row that
// does not start on a vector boundary splits every load across two cache lines (measured on
// Zen 4: a third slower, in L1 and in L2 alike). When `in` or any offset is not a multiple of
// the vector width (a KxK conv's taps, 14x14 planes), each tile's K rows are first copied
// ("packed") into an aligned per-thread buffer (K x tile floats): one misaligned read per
// input element instead of one per nonzero that uses it. Mapped inputs (SpmmInputMap: a conv's
// output pixels over a padded plane, no junk columns computed) are always packed, each tile
// vector assembled from masked loads of the input-row runs it spans.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <tuple>
#include <vector>

#include "kernels/epilogue.h"
#include "runtime/cpu_features.h"

namespace si {

class ThreadPool;

// Largest K (weight columns) the storage takes: a column index is a uint16.
inline constexpr int kSpmmMaxK = 65536;

// W: M x K dense row-major weights, compressed at construction (exact zeros dropped) for one
// ISA. col_offsets[k] (k in [0, K)): element offset of input row k relative to the `in`
// pointer given to spmm_f32 (k * Q for a plain [K, Q] matrix; c * plane + r * padded_width + s
// for a tap of a stride-1 conv over a padded plane). Offsets must be in [0, INT32_MAX], K in
// [0, kSpmmMaxK] and nnz at most INT32_MAX (std::invalid_argument otherwise). An unsupported
// ISA also throws std::invalid_argument. column_panels = false keeps one panel whatever K: for
// weights only ever multiplied by one position (Q == 1 runs as a matrix-vector product, where
// panels would only cut every row into short segments).
class SparseWeights {
 public:
  SparseWeights(const float* w, int M, int K, const int64_t* col_offsets, Isa isa, bool column_panels = true);

  int M() const { return M_; }
  int K() const { return K_; }
  size_t nnz() const { return nnz_; }
  Isa isa() const { return isa_; }
  // Memory of the compressed form: 6 bytes per nonzero (5 narrow) + 4 per column + 4 per row and
  // panel (+ 4) + 4 per row (+ 4), i.e. 6 nnz + 4 K + 4 (panels M + 1) + 4 (M + 1).
  size_t bytes() const { return nonzero_bytes() + col_off_.size() * sizeof(int32_t); }
  // Columns per panel and the number of panels (>= 1; see Panels above).
  int panel_k() const { return panel_k_; }
  int panels() const { return panels_; }
  // Largest col_offsets[k] (over all k, -1 when K == 0): the input must hold at least
  // max_col_offset() + Q floats.
  int64_t max_col_offset() const { return max_col_offset_; }

  // Frees the nonzeros (values, columns, row starts and counts): the shape, the panels and the
  // offset table stay, for generated code that holds its own copy of the weights
  // (GeneratedSpmm). spmm_f32 refuses released weights (std::logic_error); bytes() shrinks by
  // nonzero_bytes().
  void release_nonzeros();
  bool released() const { return released_; }
  size_t nonzero_bytes() const {
    return val_.size() * sizeof(float) + col_.size() * sizeof(uint16_t) + col8_.size() +
           row_start_.size() * sizeof(int32_t) + row_nnz_.size() * sizeof(int32_t);
  }

  // The same weights with every offset multiplied by `factor` (for weights built with
  // col_offsets[k] = k: the plain [K, Q] layout once its row stride is known): only the col_off
  // table changes. Throws std::invalid_argument when an offset would no longer fit int32.
  SparseWeights scaled_offsets(int64_t factor) const;

  const float* values() const { return val_.data(); }        // nnz values, panel by panel, row by row
  // Narrow (AVX-512 weights with panels of at most 256 columns): each nonzero's column is stored
  // as its place in its panel, k - p * panel_k(), a uint8 (cols_in_panel()); else as k, a uint16
  // (cols()). The other array is empty.
  bool narrow() const { return narrow_; }
  const uint16_t* cols() const { return col_.data(); }        // nnz column indices k
  const uint8_t* cols_in_panel() const { return col8_.data(); }
  const int32_t* col_off() const { return col_off_.data(); }  // K element offsets
  // s when col_off()[k] == k * s for every k (a plain [K, Q] input, a 1x1 conv's planes), else
  // -1: the kernels then compute the offset with a multiply instead of a table load (loads are
  // the kernels' tighter resource).
  int64_t col_stride() const { return col_stride_; }
  // Largest power of two <= 16 that divides every offset (16 when K == 0).
  int offset_alignment() const { return offset_align_; }
  // Segment (panel p, row m) of values()/cols() is [row_start()[p * M + m], row_start()[p * M + m + 1]).
  const int32_t* row_start() const { return row_start_.data(); }  // panels x M + 1 values
  // Nonzeros of rows [0, m) over all panels (M + 1 values): the driver's load balance.
  const int32_t* row_nnz() const { return row_nnz_.data(); }

 private:
  SparseWeights() = default;
  int M_ = 0, K_ = 0;
  size_t nnz_ = 0;
  bool released_ = false;
  Isa isa_ = Isa::kPortable;
  int64_t max_col_offset_ = -1;
  std::vector<float> val_;
  std::vector<uint16_t> col_;
  std::vector<uint8_t> col8_;
  bool narrow_ = false;
  std::vector<int32_t> col_off_;
  int64_t col_stride_ = -1;
  int offset_align_ = 16;
  int panel_k_ = 1, panels_ = 1;
  std::vector<int32_t> row_start_;
  std::vector<int32_t> row_nnz_;
};

// Where the input of position q lies when the positions are not one contiguous run (the
// output pixels of a KxK conv over a padded plane: rows of row_len pixels, row_stride apart,
// images of img_len pixels, img_stride apart): q = img * img_len + row * row_len + col reads
// img * img_stride + row * row_stride + col (plus the weight column's offset).
//
// Implicit zero padding (taps_h > 0; stride-1 convs whose kernel packs its input): the input is
// the conv's unpadded planes (in_h x in_w, row_stride == in_w) and weight column k is tap
// (r, s) = ((k / taps_w) % taps_h, k % taps_w), so column k at output pixel (row, col) reads the
// input pixel (row + r * dil_h - pad_top, col + s * dil_w - pad_left) when it lies in the plane
// and 0 when it does not (the padding is never read, nor written anywhere: no padded copy of
// the input per call). The offsets then assume a plane that starts pad_top rows and pad_left
// columns before the input: the caller passes `in` moved back by pad_top * in_w + pad_left
// floats, where only clipped reads would land. The packing kernels clip every tap; generated
// code reading in place clips taps to the rows only (its column classes, see GeneratedSpmm):
// it needs pad_top 0 and the padding rows in the input (std::invalid_argument otherwise).
struct SpmmInputMap {
  int64_t row_len, row_stride, img_len, img_stride;
  int taps_h = 0, taps_w = 0, in_h = 0, in_w = 0, pad_top = 0, pad_left = 0, dil_h = 1, dil_w = 1;
  int taps() const { return taps_h * taps_w; }
  // Weight column k's tap: its rows and columns from the padded window's corner.
  int64_t tap_dy(int k) const { return int64_t(k / taps_w % taps_h) * dil_h; }
  int64_t tap_dx(int k) const { return int64_t(k % taps_w) * dil_w; }
  // The pointer the offsets count from: the padded window's corner, pad_top rows and pad_left
  // columns before `planes` (`planes` itself without implicit padding).
  const float* corner(const float* planes) const {
    return reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(planes) -
                                          (size_t(pad_top) * in_w + pad_left) * sizeof(float));
  }
  // Every field (a map is a cache key: spmm_piece_lists).
  auto fields() const {
    return std::tie(row_len, row_stride, img_len, img_stride, taps_h, taps_w, in_h, in_w, pad_top, pad_left, dil_h,
                    dil_w);
  }
  bool operator==(const SpmmInputMap& o) const { return fields() == o.fields(); }
};

// out[m * ldo + q] = act(sum_k W[m][k] * in[col_offsets[k] + src(q)] + bias[m] + residual[m * ldo + q])
// for m in [0, M), q in [0, Q), src(q) = q, or as `map` says. ep.bias has M entries (per
// output row), ep.residual has the output's layout and row stride ldo and may be `out` itself
// (but must not otherwise overlap it). pool may be nullptr (single thread). Q == 0 is a no-op.
// No heap allocation but a per-thread packing buffer, grown once.
void spmm_f32(const SparseWeights& W, const float* in, int64_t Q, float* out, int64_t ldo,
              const Epilogue& ep, ThreadPool* pool, const SpmmInputMap* map = nullptr);

// Throws std::invalid_argument (naming `who`) unless `map` is well formed for W (see
// SpmmInputMap).
void check_map(const SpmmInputMap& map, const SparseWeights& W, const char* who);

// Generated code (AVX-512 only; spmm_generated_avx512.cc): the same product by code generated for the
// weights' pattern, register-blocked over output rows (28 rows x 16 positions in zmm0-27, each
// input vector loaded once per column of a row block instead of once per nonzero). The code
// either reads a packed copy of each tile (one 16-position slice per vector) or, in_place, the
// input where it is (each column's offset in the load; vectors cut at the map's rows, or at its
// images where rows follow each other in the input as in the output, their last lanes masked):
// then the input must be laid out as W's col_offsets said (a conv's planes), and every col_offset
// must fit a 32-bit byte displacement (can_read_in_place). GeneratedSpmm generates the code of
// one SparseWeights (compressed for avx512) once; W must outlive it.
// bytes(): its memory (code, the weights in code order, chunk tables).
// In place, the code can also clip a conv's taps to its rows (implicit padding along rows, the
// map's taps with pad_top 0 and the padding rows in the input): column k then loads under the
// lane mask of its class k % column_classes (the tap's column, column_classes = the kernel's
// width), 16-bit masks k1..k7 set per vector; std::invalid_argument for column_classes outside
// [1, kSpmmMaxColumnClasses].
// base_lane (in place, 0-15; -1 unknown): every vector's first input lies at that lane of a
// 64-byte line (`in` does, and the map's row and image strides are multiples of 16 floats), so the
// code loads whole lines and shifts each column's vector out of them instead of loads that cross
// two lines (std::invalid_argument from run() otherwise). It reads up to a line before and after
// what the unaligned loads would: the input needs a line of slack on both sides.
inline constexpr int kSpmmMaxColumnClasses = 7;
class GeneratedCode;
class GeneratedSpmm {
 public:
  explicit GeneratedSpmm(const SparseWeights& W, bool in_place = false, int column_classes = 1, int base_lane = -1);
  static bool can_read_in_place(const SparseWeights& W);
  bool in_place() const;
  ~GeneratedSpmm();
  GeneratedSpmm(const GeneratedSpmm&) = delete;
  GeneratedSpmm& operator=(const GeneratedSpmm&) = delete;
  void run(const float* in, int64_t Q, float* out, int64_t ldo, const Epilogue& ep, ThreadPool* pool,
           const SpmmInputMap* map = nullptr) const;
  size_t bytes() const;

 private:
  const SparseWeights& W_;
  std::unique_ptr<GeneratedCode> code_;
};

// Every variant of the family, reference first.
inline constexpr Isa kSpmmVariants[] = {Isa::kPortable, Isa::kAvx2, Isa::kAvx512};

// ---- family internals (shared by spmm.cc and the ISA files) ----

// One task: rows [m0, m1) x positions [q0, q1) of the output.
struct SpmmArgs {
  const float* val;          // nnz values
  const uint16_t* col;       // nnz column indices (nullptr when narrow)
  const uint8_t* col8;       // narrow weights: nnz columns within their panel (else nullptr)
  const int32_t* col_off;    // K element offsets into `in`
  int64_t col_stride;        // >= 0: col_off[k] == k * col_stride (see SparseWeights::col_stride)
  const int32_t* row_start;  // panels x M + 1 segment starts into val / col
  const float* in;
  int K;        // columns (entries of col_off)
  int M;        // rows of the weights (row_start's stride between panels)
  int panel_k, panels;
  float* pack;  // nullptr: read `in` in place; else an aligned buffer of min(K, panel_k) x
                // spmm_tile floats the ISA kernels pack each tile's (panel's) input rows into
                // first (see Alignment; always set when panels > 1)
  float* acc;   // panels > 1: an aligned buffer of (m1 - m0) x spmm_tile floats (partial sums)
  SpmmInputMap map;  // map.row_len == 0: positions are contiguous in `in` (else always packed)
  float* out;
  int64_t ldo;
  int64_t q0, q1;
  int m0, m1;
  const float* bias;      // M values or nullptr
  const float* residual;  // output layout, or nullptr
  Activation act;
  float alpha, beta;
};
using SpmmKernel = void (*)(const SpmmArgs&);

// Element offset of input row `c` in the kernels: a multiply when the offsets are k * stride
// (SpmmArgs::col_stride >= 0), else the table.
template <bool AFFINE>
inline int64_t spmm_offset(uint16_t c, const int32_t* col_off, int64_t stride) {
  return AFFINE ? int64_t(c) * stride : int64_t(col_off[c]);
}

// Element offset of position q's input (before the weight column's offset).
inline int64_t spmm_source(const SpmmArgs& a, int64_t q) {
  if (a.map.row_len == 0) return q;
  const int64_t img = q / a.map.img_len, r = q % a.map.img_len;
  return img * a.map.img_stride + (r / a.map.row_len) * a.map.row_stride + r % a.map.row_len;
}

// The tile [q, q + w) of a mapped input as runs of positions contiguous in the input, one per
// output row it spans: positions [j0, j1) of the tile, output row `row` (within its image) from
// column `col`, position q + j reading off + j (before the weight column's offset). At most w
// runs; the divisions are here, once per tile.
struct SpmmRun {
  int j0, j1;
  int64_t row, col, off;
};
template <class F>
inline void spmm_tile_runs(const SpmmArgs& a, int64_t q, int w, const F& f) {
  const SpmmInputMap& m = a.map;
  for (int j0 = 0; j0 < w;) {
    const int64_t in_img = (q + j0) % m.img_len, col = in_img % m.row_len;
    const int j1 = static_cast<int>(m.row_len - col < w - j0 ? j0 + m.row_len - col : w);
    f(SpmmRun{j0, j1, in_img / m.row_len, col, spmm_source(a, q + j0) - j0});
    j0 = j1;
  }
}

// A run as VW-lane vector pieces: f(v, l0, l1, off) for lanes [l0, l1) of vector v reading
// `off + lane`, in increasing v. tap >= 0 (implicit zero padding, see SpmmInputMap): only the
// lanes whose pixel lies in the plane for that tap (lanes of no piece read 0).
template <int VW, class F>
inline void spmm_run_pieces(const SpmmInputMap& m, const SpmmRun& run, int tap, const F& f) {
  int64_t c0 = run.j0, c1 = run.j1;  // the positions whose tap lies in the plane
  if (tap >= 0) {
    const int64_t y = run.row + m.tap_dy(tap) - m.pad_top;
    const int64_t x = run.col + m.tap_dx(tap) - m.pad_left;  // the run's first pixel
    if (y < 0 || y >= m.in_h) return;
    c0 = run.j0 + (x < 0 ? -x : 0);
    c1 = run.j1 - (x + (run.j1 - run.j0) > m.in_w ? x + (run.j1 - run.j0) - m.in_w : 0);
  }
  for (int64_t v = c0 / VW; c0 < c1 && v * VW < c1; ++v)
    f(static_cast<int>(v), static_cast<int>((c0 > v * VW ? c0 : v * VW) - v * VW),
      static_cast<int>((c1 < v * VW + VW ? c1 : v * VW + VW) - v * VW), run.off + VW * v);
}

// The pieces of the tile [q, q + w) per tap class (implicit padding: tap t's list clips the
// runs for tap t; without, one list for every column), make(v, l0, l1, off) giving an ISA's
// piece. A pure function of (map, q, w), kept per thread for the next call: a tile's panels
// each pack from the same lists, which are built once (their divisions per run and a list per
// tap cost more than packing a panel of a small tile). starts[t]..starts[t + 1] index list t.
template <class Piece>
struct SpmmPieceLists {
  const Piece* pieces;
  const int* starts;
};
template <class Piece, int VW, class Make>
inline SpmmPieceLists<Piece> spmm_piece_lists(const SpmmArgs& a, int64_t q, int w, const Make& make) {
  struct Cache {
    bool valid = false;
    int64_t q = 0;
    int w = 0;
    SpmmInputMap map{};
    std::vector<Piece> pieces;
    std::vector<int> starts;
    std::vector<SpmmRun> runs;
  };
  thread_local Cache cache;
  Cache& c = cache;  // (one TLS lookup)
  const SpmmInputMap& m = a.map;
  if (!(c.valid && c.q == q && c.w == w && c.map == m)) {
    const int lists = m.taps() > 0 ? m.taps() : 1;
    c.pieces.resize(size_t(lists) * (w + w / VW + 2));  // a run per position at most, + a split per vector
    c.starts.resize(size_t(lists) + 1);
    c.runs.clear();
    spmm_tile_runs(a, q, w, [&](const SpmmRun& r) { c.runs.push_back(r); });
    int n = 0;
    for (int t = 0; t < lists; ++t) {
      c.starts[t] = n;
      for (const SpmmRun& r : c.runs)
        spmm_run_pieces<VW>(m, r, m.taps() > 0 ? t : -1,
                            [&](int v, int l0, int l1, int64_t off) { c.pieces[n++] = make(v, l0, l1, off); });
    }
    c.starts[lists] = n;
    c.valid = true, c.q = q, c.w = w, c.map = m;
  }
  return {c.pieces.data(), c.starts.data()};
}

// Whether input position q of weight column k reads the plane (true) or implicit padding: the
// scalar form of spmm_run_pieces' clipping (the portable kernel's).
inline bool spmm_tap_inside(const SpmmInputMap& m, int64_t q, int k) {
  if (m.taps_h == 0) return true;
  const int64_t in_img = q % m.img_len;
  const int64_t y = in_img / m.row_len + m.tap_dy(k) - m.pad_top;
  const int64_t x = in_img % m.row_len + m.tap_dx(k) - m.pad_left;
  return y >= 0 && y < m.in_h && x >= 0 && x < m.in_w;
}

// Asks for input row `src`'s run of `floats` floats (the next tile's, while packing this one)
// to be brought into L2: a packed row is a short run of a long plane, and with a few hundred
// such rows in flight (one per weight column) the hardware prefetchers, which follow a few
// dozen streams, leave each run to a demand miss once the planes are past L2 (VGG's 224x224
// layers read their input at a fraction of the memory bandwidth without this).
inline void spmm_prefetch_run(const float* src, int floats) {
  for (int j = 0; j < floats; j += 16) __builtin_prefetch(src + j, 0, 2);
  __builtin_prefetch(src + floats - 1, 0, 2);
}

// After output row m of a tile (rows [m0, m1), `tile` positions from `out`, rows ldo apart) is
// stored: prefetches the output lines of the row kSpmmPrefetchRows ahead, and of its residual;
// past the last row, the next tile's first rows (when there is one), `floats` of each (a plain
// read prefetch: a PREFETCHW build measured no different). Every output row is its own store
// stream, hundreds of them, more than the hardware prefetchers follow, so on maps past L2 each
// row's stores otherwise wait for their lines (resnet50-pruned90 batch 64: 2-8% faster with two
// nonzeros in flight per row; with one at a time, distances 8, 16, 32 and none measured alike).
inline constexpr int kSpmmPrefetchRows = 16;
inline void spmm_prefetch_row_ahead(float* out, const float* residual, int m, int m0, int m1, int64_t ldo, int tile,
                                    bool next_tile, int floats) {
  int mp = m + kSpmmPrefetchRows;
  int64_t off = 0;
  if (mp >= m1) mp -= m1 - m0, off = tile;
  if (mp >= m1 || (off && !next_tile)) return;
  off += mp * ldo;
  for (int j = 0; j < floats; j += 16) {
    __builtin_prefetch(out + off + j, 0, 3);
    if (residual) __builtin_prefetch(residual + off + j, 0, 3);
  }
}

// The row loop of every ISA kernel over the tile at q and panel p: for each row m of [a.m0,
// a.m1) (skipping rows with no nonzeros in a middle panel), row(val, col, end, init, partial,
// out, residual, bias) with the row's segment of a.val / a.col, the partial sums to start from
// (init; nullptr: zero) and to leave (partial; nullptr: through the epilogue to `out`, adding
// `residual` when not nullptr), then after the last panel the row-ahead prefetch (floats: the
// tile's width). Reads `a` only before the first store: the compiler cannot tell the stores
// from a's floats and would reload every field per row.
template <int TILE, class C, class Row>
inline void spmm_rows(const SpmmArgs& a, const C* col, int p, int64_t q, int floats, const Row& row) {
  const int32_t* rs = a.row_start + size_t(p) * a.M;
  const bool first = p == 0, last = p + 1 == a.panels;
  const float* const val = a.val;
  const float* const bias = a.bias;
  const int64_t ldo = a.ldo;
  float* const out = a.out + q;
  const float* const residual = a.residual ? a.residual + q : nullptr;
  float* const acc0 = a.acc;
  const int m0 = a.m0, m1 = a.m1;
  const bool next_tile = q + TILE < a.q1;
  for (int m = m0; m < m1; ++m) {
    const int32_t i0 = rs[m], i1 = rs[m + 1];
    if (!first && !last && i0 == i1) continue;
    float* acc = acc0 ? acc0 + size_t(m - m0) * TILE : nullptr;
    row(val + i0, col + i0, col + i1, first ? nullptr : acc, last ? nullptr : acc, out + m * ldo,
        residual ? residual + m * ldo : nullptr, bias ? bias[m] : 0.f);
    if (last) spmm_prefetch_row_ahead(out, residual, m, m0, m1, ldo, TILE, next_tile, floats);
  }
}

// A 64-byte aligned per-thread buffer of at least n floats, grown once per thread to the
// largest size asked for (Slot 0: packed input, 1: partial sums).
template <int Slot>
float* spmm_thread_buffer(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n + 16) buf.resize(n + 16);
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - p % 64) % 64) / sizeof(float);
}

// The rows of the tile at q, as every ISA kernel sweeps them: packed, panel by panel (pack(k0,
// k1) packs input rows [k0, k1) into a.pack at row stride TILE, then rows(p, x, TILE) with x
// such that x + k * TILE is packed row k); in place, rows(0, in + q, col_stride) with computed
// offsets or table(in + q) with the offset table.
template <int TILE, class Pack, class Rows, class Table>
inline void spmm_tile_rows(const SpmmArgs& a, int64_t q, const Pack& pack, const Rows& rows, const Table& table) {
  if (a.pack) {
    for (int p = 0; p < a.panels; ++p) {
      const int k0 = p * a.panel_k, k1 = k0 + a.panel_k < a.K ? k0 + a.panel_k : a.K;
      pack(k0, k1);
      rows(p, a.pack - int64_t(k0) * TILE, int64_t(TILE));
    }
  } else if (a.col_stride >= 0) {
    rows(0, a.in + q, a.col_stride);
  } else {
    table(a.in + q);
  }
}

void spmm_kernel_portable(const SpmmArgs& a);
void spmm_kernel_avx2(const SpmmArgs& a);
void spmm_kernel_avx512(const SpmmArgs& a);

// Positions per main tile of a variant (64 / 32 / 64).
int spmm_tile(Isa isa);
// Columns per panel of a variant: panel_k x tile floats = 64 KiB (see spmm.cc).
int spmm_panel_k(Isa isa);
// Floats per vector of a variant (16 / 8 / 1): the input alignment its loads want.
int spmm_vector_floats(Isa isa);

}  // namespace si
