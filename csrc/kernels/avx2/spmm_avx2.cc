// AVX2+FMA f32 spmm kernel: a tile of 32 positions (4 ymm) per output row, two nonzeros in
// flight (8 accumulators). Remainder tiles of 24/16/8 positions, the last vector loaded and
// stored with vmaskmov (fault-free on masked lanes).
#include <immintrin.h>

#include "kernels/avx2/vec_math.h"
#include "kernels/spmm.h"

namespace si {
namespace {

constexpr int kTile = 32;

template <int NV, bool MASK>
inline __m256 load(const float* p, int v, __m256i lm) {
  if (MASK && v == NV - 1) return _mm256_maskload_ps(p, lm);
  return _mm256_loadu_ps(p);
}

// One output row x (8 * NV) positions over the nonzeros [col, end); sums start from `init` (a
// previous panel's partial sums) or zero, and go to `partial` when more panels follow, else
// through the epilogue to `o`.
template <int NV, bool MASK, bool AFFINE, class Act>
inline void row_tile(const float* val, const uint16_t* col, const uint16_t* end, const int32_t* col_off,
                     int64_t stride, const float* x, const float* init, float* partial, float* o, const float* r,
                     float bias, __m256i lm, const Act& act) {
  __m256 c0[NV], c1[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    c0[v] = init ? _mm256_load_ps(init + 8 * v) : _mm256_setzero_ps();
    c1[v] = _mm256_setzero_ps();
  }
  for (; col + 1 < end; col += 2, val += 2) {
    const float* x0 = x + spmm_offset<AFFINE>(col[0], col_off, stride);
    const float* x1 = x + spmm_offset<AFFINE>(col[1], col_off, stride);
    const __m256 w0 = _mm256_broadcast_ss(val), w1 = _mm256_broadcast_ss(val + 1);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      c0[v] = _mm256_fmadd_ps(w0, load<NV, MASK>(x0 + 8 * v, v, lm), c0[v]);
      c1[v] = _mm256_fmadd_ps(w1, load<NV, MASK>(x1 + 8 * v, v, lm), c1[v]);
    }
  }
  if (col < end) {
    const float* x0 = x + spmm_offset<AFFINE>(col[0], col_off, stride);
    const __m256 w0 = _mm256_broadcast_ss(val);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c0[v] = _mm256_fmadd_ps(w0, load<NV, MASK>(x0 + 8 * v, v, lm), c0[v]);
  }
  if (partial) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_store_ps(partial + 8 * v, _mm256_add_ps(c0[v], c1[v]));
    return;
  }
  const __m256 b = _mm256_set1_ps(bias);
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    __m256 s = _mm256_add_ps(_mm256_add_ps(c0[v], c1[v]), b);
    if (r) s = _mm256_add_ps(s, load<NV, MASK>(r + 8 * v, v, lm));
    s = act(s);
    if (MASK && v == NV - 1)
      _mm256_maskstore_ps(o + 8 * v, lm, s);
    else
      _mm256_storeu_ps(o + 8 * v, s);
  }
}

// Rows [m0, m1) of the tile at q over panel p's nonzeros (spmm_rows), reading input row k at
// x + offset(k) (stride or table); panels > 1: partial sums in a.acc between panels.
template <int NV, bool MASK, bool AFFINE, class Act>
void rows_as(const SpmmArgs& a, int p, const float* x, int64_t stride, int64_t q, __m256i lm, const Act& act) {
  const int32_t* const col_off = a.col_off;
  spmm_rows<kTile>(a, a.col, p, q, 8 * NV,
                   [&](const float* val, const uint16_t* col, const uint16_t* end, const float* init, float* partial,
                       float* o, const float* r, float bias) {
                     row_tile<NV, MASK, AFFINE>(val, col, end, col_off, stride, x, init, partial, o, r, bias, lm, act);
                   });
}

// Mapped input: each vector of the tile assembled from masked loads, one per contiguous run of
// input it spans (a run lane j reads off + j); lanes past the tile (or in implicit padding) zero.
void pack_tile_mapped(const SpmmArgs& a, int64_t q, int w, int k0, int k1) {
  struct Piece {
    int v;
    __m256i lanes;
    int64_t off;
  };
  const int taps = a.map.taps();
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const SpmmPieceLists<Piece> lists = spmm_piece_lists<Piece, 8>(a, q, w, [&](int v, int l0, int l1, int64_t off) {
    return Piece{v, _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(l0), idx),
                                        _mm256_cmpgt_epi32(_mm256_set1_epi32(l1), idx)), off};
  });
  const Piece* const pieces = lists.pieces;
  const int nv = (w + 7) / 8;
  for (int k = k0, t = taps > 0 ? k0 % taps : 0; k < k1; ++k, t = t + 1 >= taps ? 0 : t + 1) {
    const float* src = a.in + a.col_off[k];
    float* dst = a.pack + int64_t(k - k0) * kTile;
    int i = lists.starts[t];
    const int end = lists.starts[t + 1];
    for (int v = 0; v < nv; ++v) {
      __m256 vec = _mm256_setzero_ps();
      for (; i < end && pieces[i].v == v; ++i)
        vec = _mm256_blendv_ps(vec, _mm256_maskload_ps(src + pieces[i].off, pieces[i].lanes),
                               _mm256_castsi256_ps(pieces[i].lanes));
      _mm256_store_ps(dst + 8 * v, vec);
    }
  }
}

// The tile's input rows [k0, k1) (the last vector masked: zeros past the edge) into a.pack, row
// stride kTile, every row on a vector boundary (mapped inputs: pack_tile_mapped).
template <int NV, bool MASK>
void pack_tile(const SpmmArgs& a, int64_t q, __m256i lm, int k0, int k1) {
  if (a.map.row_len) return pack_tile_mapped(a, q, static_cast<int>(a.q1 - q < kTile ? a.q1 - q : kTile), k0, k1);
  const float* x = a.in + q;
  for (int k = k0; k < k1; ++k) {
    const float* src = x + a.col_off[k];
    float* dst = a.pack + int64_t(k - k0) * kTile;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_store_ps(dst + 8 * v, load<NV, MASK>(src + 8 * v, v, lm));
  }
}

template <int NV, bool MASK, class Act>
void rows(const SpmmArgs& a, int64_t q, __m256i lm, const Act& act) {
  spmm_tile_rows<kTile>(
      a, q, [&](int k0, int k1) { pack_tile<NV, MASK>(a, q, lm, k0, k1); },
      [&](int p, const float* x, int64_t stride) { rows_as<NV, MASK, true>(a, p, x, stride, q, lm, act); },
      [&](const float* x) { rows_as<NV, MASK, false>(a, 0, x, -1, q, lm, act); });
}

// One position (a matrix-vector product: a linear layer on one token): 8 nonzeros per step,
// their inputs gathered, instead of a one-lane masked load per nonzero.
template <bool AFFINE>
void spmv(const SpmmArgs& a) {
  const float* x = a.in + spmm_source(a, a.q0);
  const __m256i stride = _mm256_set1_epi32(static_cast<int32_t>(AFFINE ? a.col_stride : 0));
  for (int m = a.m0; m < a.m1; ++m) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float s = 0.f;
    for (int p = 0; p < a.panels; ++p) {
      int32_t i = a.row_start[size_t(p) * a.M + m];
      const int32_t end = a.row_start[size_t(p) * a.M + m + 1];
      for (; i + 16 <= end; i += 16) {
        const __m256i c0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.col + i)));
        const __m256i c1 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.col + i + 8)));
        const __m256i o0 = AFFINE ? _mm256_mullo_epi32(c0, stride) : _mm256_i32gather_epi32(a.col_off, c0, 4);
        const __m256i o1 = AFFINE ? _mm256_mullo_epi32(c1, stride) : _mm256_i32gather_epi32(a.col_off, c1, 4);
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.val + i), _mm256_i32gather_ps(x, o0, 4), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.val + i + 8), _mm256_i32gather_ps(x, o1, 4), acc1);
      }
      for (; i < end; ++i) s += a.val[i] * x[spmm_offset<AFFINE>(a.col[i], a.col_off, a.col_stride)];
    }
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s += _mm_cvtss_f32(h);
    s += a.bias ? a.bias[m] : 0.f;
    if (a.residual) s += a.residual[m * a.ldo + a.q0];
    a.out[m * a.ldo + a.q0] = apply_activation(s, a.act, a.alpha, a.beta);
  }
}

}  // namespace

void spmm_kernel_avx2(const SpmmArgs& a) {
  // (A single position with implicit padding goes through the tiles: spmv reads every tap.)
  if (a.q1 - a.q0 == 1 && a.map.taps() == 0) return a.col_stride >= 0 ? spmv<true>(a) : spmv<false>(a);
  avx2::with_activation(a.act, a.alpha, a.beta, [&](const auto& act) {
    int64_t q = a.q0;
    const __m256i full = _mm256_set1_epi32(-1);
    for (; q + kTile <= a.q1; q += kTile) rows<4, false>(a, q, full, act);
    const int w = static_cast<int>(a.q1 - q);
    if (w <= 0) return;
    const int nv = (w + 7) / 8, last = w - 8 * (nv - 1);
    const __m256i lm = _mm256_cmpgt_epi32(_mm256_set1_epi32(last), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    switch (nv) {
      case 4: return rows<4, true>(a, q, lm, act);
      case 3: return rows<3, true>(a, q, lm, act);
      case 2: return rows<2, true>(a, q, lm, act);
      default: return rows<1, true>(a, q, lm, act);
    }
  });
}

}  // namespace si
