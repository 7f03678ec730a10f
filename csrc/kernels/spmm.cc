// f32 spmm: weight compression, the portable (reference) kernel, the task-splitting driver and
// the one dispatch point of the family (spmm_tile / kernel_for).
#include "kernels/spmm.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "runtime/thread_pool.h"

namespace si {
namespace {

constexpr int kPortableTile = 64;
constexpr double kSerialWork = 1 << 17;  // below this many (nnz + rows) x positions: one thread
constexpr int64_t kRowCost = 4;          // epilogue + row setup, in nonzero-equivalents

SpmmKernel kernel_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return spmm_kernel_avx512;
    case Isa::kAvx2: return spmm_kernel_avx2;
    default: return spmm_kernel_portable;
  }
}

void check_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_isa()))
    throw std::invalid_argument(std::string("ISA ") + isa_name(isa) +
                                " is not supported by this CPU (best: " + isa_name(best_isa()) + ")");
}

// First row m in [0, M] with cost(m) = row_nnz[m] + kRowCost * m >= target.
int row_at_cost(const int32_t* row_nnz, int M, int64_t target) {
  int lo = 0, hi = M;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (row_nnz[mid] + kRowCost * mid < target) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// s when col_off[k] == k * s for every k, else -1.
int64_t affine_stride(const std::vector<int32_t>& col_off) {
  if (col_off.empty()) return -1;
  const int64_t s = col_off.size() > 1 ? int64_t(col_off[1]) : 0;
  for (size_t k = 0; k < col_off.size(); ++k)
    if (col_off[k] != int64_t(k) * s) return -1;
  return s;
}

// Largest power of two <= 16 dividing every offset.
int power_of_two_dividing(const std::vector<int32_t>& col_off) {
  int align = 16;
  for (int32_t o : col_off)
    while (o % align) align /= 2;
  return align;
}

}  // namespace

// ---- SparseWeights ----

SparseWeights::SparseWeights(const float* w, int M, int K, const int64_t* col_offsets, Isa isa, bool column_panels)
    : M_(M), K_(K), isa_(isa) {
  if (M < 0 || K < 0) throw std::invalid_argument("SparseWeights: M and K must be >= 0");
  if (K > kSpmmMaxK)
    throw std::invalid_argument("SparseWeights: K = " + std::to_string(K) + " exceeds the spmm limit of " +
                                std::to_string(kSpmmMaxK) + " columns (column indices are stored as uint16)");
  check_isa(isa);
  if (K > 0 && !col_offsets) throw std::invalid_argument("SparseWeights: col_offsets is null");
  col_off_.resize(static_cast<size_t>(K));
  for (int k = 0; k < K; ++k) {
    const int64_t o = col_offsets[k];
    if (o < 0 || o > std::numeric_limits<int32_t>::max())
      throw std::invalid_argument("SparseWeights: col_offsets[" + std::to_string(k) + "] = " +
                                  std::to_string(o) +
                                  " is outside [0, 2^31 - 1] (offsets are stored as int32)");
    col_off_[k] = static_cast<int32_t>(o);
    max_col_offset_ = std::max(max_col_offset_, o);
  }
  col_stride_ = affine_stride(col_off_);
  offset_align_ = power_of_two_dividing(col_off_);
  size_t nnz = 0;
  for (size_t i = 0, n = static_cast<size_t>(M) * K; i < n; ++i) nnz += w[i] != 0.f;
  if (nnz > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw std::invalid_argument("SparseWeights: " + std::to_string(nnz) +
                                " nonzeros exceed the spmm limit of 2^31 - 1 (row starts are stored as int32)");
  panel_k_ = std::max(1, column_panels ? std::min(K, spmm_panel_k(isa)) : K);
  narrow_ = isa == Isa::kAvx512 && panel_k_ <= 256;
  val_.reserve(nnz);
  if (narrow_)
    col8_.reserve(nnz);
  else
    col_.reserve(nnz);
  panels_ = K > 0 ? (K + panel_k_ - 1) / panel_k_ : 1;
  row_start_.resize(static_cast<size_t>(panels_) * M + 1);
  row_nnz_.assign(static_cast<size_t>(M) + 1, 0);
  for (int p = 0; p < panels_; ++p) {
    const int k0 = p * panel_k_, k1 = std::min(K, k0 + panel_k_);
    for (int m = 0; m < M; ++m) {
      row_start_[size_t(p) * M + m] = static_cast<int32_t>(val_.size());
      const float* row = w + static_cast<size_t>(m) * K;
      for (int k = k0; k < k1; ++k)
        if (row[k] != 0.f) {
          val_.push_back(row[k]);
          if (narrow_)
            col8_.push_back(static_cast<uint8_t>(k - k0));
          else
            col_.push_back(static_cast<uint16_t>(k));
          ++row_nnz_[m + 1];
        }
    }
  }
  row_start_.back() = static_cast<int32_t>(val_.size());
  nnz_ = val_.size();
  for (int m = 0; m < M; ++m) row_nnz_[m + 1] += row_nnz_[m];  // counts -> prefix sums
}

void SparseWeights::release_nonzeros() {
  std::vector<float>().swap(val_);
  std::vector<uint16_t>().swap(col_);
  std::vector<uint8_t>().swap(col8_);
  std::vector<int32_t>().swap(row_start_);
  std::vector<int32_t>().swap(row_nnz_);
  released_ = true;
}

SparseWeights SparseWeights::scaled_offsets(int64_t factor) const {
  if (factor < 0) throw std::invalid_argument("SparseWeights: offset factor must be >= 0");
  const int64_t lim = std::numeric_limits<int32_t>::max();
  if (max_col_offset_ > 0 && factor > lim / max_col_offset_)
    throw std::invalid_argument("SparseWeights: offsets (" + std::to_string(max_col_offset_) + " x " +
                                std::to_string(factor) + ") do not fit int32 storage");
  SparseWeights s = *this;
  s.max_col_offset_ = max_col_offset_ < 0 ? max_col_offset_ : max_col_offset_ * factor;
  for (int32_t& o : s.col_off_) o = static_cast<int32_t>(o * factor);
  s.col_stride_ = affine_stride(s.col_off_);
  s.offset_align_ = power_of_two_dividing(s.col_off_);
  return s;
}

void check_map(const SpmmInputMap& map, const SparseWeights& W, const char* who) {
  if (map.row_len < 1 || map.img_len < map.row_len || map.img_len % map.row_len != 0)
    throw std::invalid_argument(std::string(who) + ": an input map needs row_len >= 1 and img_len a multiple of row_len, got (" +
                                std::to_string(map.row_len) + ", " + std::to_string(map.row_stride) + ", " +
                                std::to_string(map.img_len) + ", " + std::to_string(map.img_stride) + ")");
  if (map.taps_h < 0 || map.taps_w < 0 || (map.taps_h > 0) != (map.taps_w > 0))
    throw std::invalid_argument(std::string(who) + ": implicit padding needs taps_h and taps_w both > 0 (or both 0)");
  if (map.taps() > 0 && (W.K() % map.taps() != 0 || map.in_h < 1 || map.in_w < 1 || map.row_stride != map.in_w ||
                         map.dil_h < 1 || map.dil_w < 1 || map.pad_top < 0 || map.pad_left < 0))
    throw std::invalid_argument(std::string(who) + ": implicit padding needs K a multiple of taps_h x taps_w (" +
                                std::to_string(W.K()) + " columns, " + std::to_string(map.taps()) +
                                " taps), in_h, in_w, dilations >= 1, pads >= 0 and row_stride == in_w");
}

// ---- the portable kernel (also the reference the ISA variants are tested against) ----

void spmm_kernel_portable(const SpmmArgs& a) {
  constexpr int T = kPortableTile;
  for (int64_t q = a.q0; q < a.q1; q += T) {
    const int w = static_cast<int>(std::min<int64_t>(T, a.q1 - q));
    int64_t src[T];
    for (int j = 0; j < w; ++j) src[j] = spmm_source(a, q + j);
    bool contiguous = a.map.taps() == 0;  // implicit padding: every read checks its tap
    for (int j = 0; j < w; ++j) contiguous = contiguous && src[j] == src[0] + j;
    const float* x = a.in + src[0];
    for (int m = a.m0; m < a.m1; ++m) {
      float acc[T];
      std::fill(acc, acc + T, 0.f);
      for (int p = 0; p < a.panels; ++p) {
        const int32_t i0 = a.row_start[size_t(p) * a.M + m], i1 = a.row_start[size_t(p) * a.M + m + 1];
        if (w == T && contiguous) {
          for (int32_t i = i0; i < i1; ++i) {
            const float* xr = x + a.col_off[a.col[i]];
            const float wv = a.val[i];
            for (int j = 0; j < T; ++j) acc[j] += wv * xr[j];
          }
        } else {
          for (int32_t i = i0; i < i1; ++i) {
            const float* xr = a.in + a.col_off[a.col[i]];
            const float wv = a.val[i];
            for (int j = 0; j < w; ++j)
              if (spmm_tap_inside(a.map, q + j, a.col[i])) acc[j] += wv * xr[src[j]];
          }
        }
      }
      float* o = a.out + m * a.ldo + q;
      const float* r = a.residual ? a.residual + m * a.ldo + q : nullptr;
      const float b = a.bias ? a.bias[m] : 0.f;
      for (int j = 0; j < w; ++j) {
        float v = acc[j] + b;
        if (r) v += r[j];
        o[j] = apply_activation(v, a.act, a.alpha, a.beta);
      }
    }
  }
}

int spmm_tile(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return 64;
    case Isa::kAvx2: return 32;
    default: return kPortableTile;
  }
}

// 64 KiB of packed input per panel: measured on Zen 4 (M x K x Q at 90% sparsity, one core),
// 16 and 32 KiB (L1-sized) lose more to the partial-sum traffic between panels than they gain,
// 64 KiB gave 65 GFLOP/s on BERT's 768 x 3072 x 128 against 48 with one panel, 52 against 39
// on a 3x3 conv's 512 x 2304 x 784; larger panels gave back part of it.
int spmm_panel_k(Isa isa) { return (64 << 10) / (spmm_tile(isa) * int(sizeof(float))); }

int spmm_vector_floats(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return 16;
    case Isa::kAvx2: return 8;
    default: return 1;
  }
}

// ---- the driver ----

void spmm_f32(const SparseWeights& W, const float* in, int64_t Q, float* out, int64_t ldo,
              const Epilogue& ep, ThreadPool* pool, const SpmmInputMap* map) {
  if (map) check_map(*map, W, "spmm_f32");
  if (W.released()) throw std::logic_error("spmm_f32: the weights' nonzeros were released (generated code holds them)");
  const int M = W.M();
  if (Q <= 0 || M <= 0) return;
  const SpmmKernel kernel = kernel_for(W.isa());
  const int64_t tile = spmm_tile(W.isa());
  const int64_t nq = (Q + tile - 1) / tile;
  const int64_t cost = static_cast<int64_t>(W.nnz()) + kRowCost * M;

  SpmmArgs base;
  base.val = W.values();
  base.col = W.narrow() ? nullptr : W.cols();
  base.col8 = W.narrow() ? W.cols_in_panel() : nullptr;
  base.col_off = W.col_off();
  base.row_start = W.row_start();
  base.in = in;
  base.K = W.K();
  base.M = M;
  base.panel_k = W.panel_k();
  base.panels = W.panels();
  base.pack = nullptr;
  base.acc = nullptr;
  base.map = map ? *map : SpmmInputMap{0, 0, 0, 0};
  base.out = out;
  base.ldo = ldo;
  base.col_stride = W.col_stride();
  base.bias = ep.bias;
  base.residual = ep.residual;
  base.act = ep.act;
  base.alpha = ep.alpha;
  base.beta = ep.beta;

  const int vec = spmm_vector_floats(W.isa());
  // (Q == 1 gathers its inputs: nothing to align; but implicit padding is clipped by the packing.)
  const bool tiles = Q > 1 || (map && map->taps() > 0);
  const bool pack = vec > 1 && W.K() > 0 && tiles &&
                    (map || W.panels() > 1 || W.offset_alignment() % vec != 0 ||
                     reinterpret_cast<uintptr_t>(in) % (vec * sizeof(float)) != 0);
  const size_t pack_floats = size_t(W.panel_k()) * size_t(tile);
  // Partial sums between panels (Q == 1 runs as a matrix-vector product and needs none).
  const bool partial = W.panels() > 1 && tiles;
  auto buffers = [&](SpmmArgs& a) {
    if (pack) a.pack = spmm_thread_buffer<0>(pack_floats);
    if (partial) a.acc = spmm_thread_buffer<1>(size_t(a.m1 - a.m0) * size_t(tile));
  };

  const int threads = pool ? pool->num_threads() : 1;
  const bool parallel = threads > 1 && static_cast<double>(cost) * Q >= kSerialWork;
  if (!parallel) {
    SpmmArgs a = base;
    a.q0 = 0;
    a.q1 = Q;
    a.m0 = 0;
    a.m1 = M;
    buffers(a);
    kernel(a);
    return;
  }
  if (nq >= threads) {
    // One block of positions per thread, always the same thread for the same positions (static
    // scheduling): a layer then reads what the same thread wrote in the previous layer, from its
    // own caches, and writes where the next layer's same thread will read.
    auto block = [&](size_t t) {
      SpmmArgs a = base;
      a.q0 = (int64_t(t) * nq / threads) * tile;
      a.q1 = std::min(Q, ((int64_t(t) + 1) * nq / threads) * tile);
      a.m0 = 0;
      a.m1 = M;
      if (a.q0 >= a.q1) return;
      buffers(a);
      kernel(a);
    };
    pool->parallel_for_static(size_t(threads), block);
    return;
  }
  // Fewer tiles than threads: ~4 tasks per thread, rows balanced by nnz (dynamic scheduling
  // evens out ragged edges).
  const int64_t target = 4 * threads;
  const int64_t qb = std::min(nq, target);
  const int64_t rb = std::min<int64_t>(M, (target + qb - 1) / qb);
  auto task = [&](size_t t) {
    const int64_t qi = static_cast<int64_t>(t) / rb, ri = static_cast<int64_t>(t) % rb;
    SpmmArgs a = base;
    a.q0 = (qi * nq / qb) * tile;
    a.q1 = std::min(Q, ((qi + 1) * nq / qb) * tile);
    a.m0 = ri == 0 ? 0 : row_at_cost(W.row_nnz(), M, ri * cost / rb);
    a.m1 = ri + 1 == rb ? M : row_at_cost(W.row_nnz(), M, (ri + 1) * cost / rb);
    if (a.m0 >= a.m1 || a.q0 >= a.q1) return;
    buffers(a);
    kernel(a);
  };
  pool->parallel_for(static_cast<size_t>(qb * rb), task);
}

}  // namespace si
