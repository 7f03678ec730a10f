// AVX-512 f32 spmm kernel: a tile of 64 positions (4 zmm) per output row, one nonzero at a time
// (4 accumulators; see row_tile). Per nonzero: its input row's offset col_off[col[i]] as the
// index of 4 memory-operand FMAs and its value val[i] as a broadcast. Remainder tiles of
// 48/32/16 positions, the last vector masked (fault-free).
#include <immintrin.h>

#include "kernels/avx512/spmm_pack.h"
#include "kernels/avx512/vec_math.h"
#include "kernels/spmm.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace si {
namespace {

constexpr int kTile = 64;

template <int NV, bool MASK>
inline __m512 load(const float* p, int v, __mmask16 lm) {
  if (MASK && v == NV - 1) return _mm512_maskz_loadu_ps(lm, p);
  return _mm512_loadu_ps(p);
}

// One output row x (16 * NV) positions over the nonzeros [col, end); the last vector has lanes
// `lm` when MASK. Sums start from `init` (a previous panel's partial sums) or zero, and go to
// `partial` (aligned, full vectors) when more panels follow, else through the epilogue to `o`.
template <int NV, bool MASK, bool AFFINE, class C, class Act>
inline void row_tile(const float* val, const C* col, const C* end, const int32_t* col_off,
                     int64_t stride, const float* x, const float* init, float* partial, float* o, const float* r,
                     float bias, __mmask16 lm, const Act& act) {
  // U nonzeros in flight, U x NV independent FMA chains: a full tile's 4 chains already match
  // the double-pumped FMA (one zmm FMA per cycle, 4 cycles of latency), and one nonzero at a
  // time leaves a row fewer instructions: no remainder loop, no partial sums to add (measured
  // with two: resnet50-pruned90 batch 64 3.4% slower, -pruned95 1.8%; the AVX2 kernel, whose
  // two FMA pipes need its 8 chains, gained nothing from one); narrower tiles need more.
  constexpr int U = NV >= 4 ? 1 : 8 / NV > 4 ? 4 : 8 / NV;
  __m512 c[U][NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    c[0][v] = init ? _mm512_load_ps(init + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) c[u][v] = _mm512_setzero_ps();
  }
  for (; col + (U - 1) < end; col += U, val += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const float* xu = x + spmm_offset<AFFINE>(col[u], col_off, stride);
      const __m512 w = _mm512_set1_ps(val[u]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[u][v] = _mm512_fmadd_ps(w, load<NV, MASK>(xu + 16 * v, v, lm), c[u][v]);
    }
  }
  for (; col < end; ++col, ++val) {
    const float* x0 = x + spmm_offset<AFFINE>(col[0], col_off, stride);
    const __m512 w0 = _mm512_set1_ps(val[0]);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[0][v] = _mm512_fmadd_ps(w0, load<NV, MASK>(x0 + 16 * v, v, lm), c[0][v]);
  }
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) c[0][v] = _mm512_add_ps(c[0][v], c[u][v]);
  }
  if (partial) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_store_ps(partial + 16 * v, c[0][v]);
    return;
  }
  const __m512 b = _mm512_set1_ps(bias);
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    __m512 s = _mm512_add_ps(c[0][v], b);
    if (r) s = _mm512_add_ps(s, load<NV, MASK>(r + 16 * v, v, lm));
    s = act(s);
    if (MASK && v == NV - 1)
      _mm512_mask_storeu_ps(o + 16 * v, lm, s);
    else
      _mm512_storeu_ps(o + 16 * v, s);
  }
}

// Rows [m0, m1) of the tile at q over panel p's nonzeros (spmm_rows), reading input row k at
// x + offset(k) (stride or table); panels > 1: partial sums in a.acc between panels. Narrow
// weights' columns count from the panel's first, k0: the input (or the table) moves there.
template <int NV, bool MASK, bool AFFINE, class Act>
void rows_as(const SpmmArgs& a, int p, const float* x, int64_t stride, int64_t q, __mmask16 lm, const Act& act) {
  auto sweep = [&](const auto* cols, const float* x0, const int32_t* col_off) {
    spmm_rows<kTile>(a, cols, p, q, 16 * NV,
                     [&](const float* val, const auto* col, const auto* end, const float* init, float* partial,
                         float* o, const float* r, float bias) {
                       row_tile<NV, MASK, AFFINE>(val, col, end, col_off, stride, x0, init, partial, o, r, bias, lm,
                                                  act);
                     });
  };
  if (!a.col8) return sweep(a.col, x, a.col_off);
  const int64_t k0 = int64_t(p) * a.panel_k;
  sweep(a.col8, AFFINE ? x + k0 * stride : x, a.col_off + k0);
}

// The tile's input rows [k0, k1) (the last vector masked: zeros past the edge) into a.pack, row
// stride kTile, every row on a vector boundary (mapped inputs: avx512::spmm_pack_mapped).
template <int NV, bool MASK>
void pack_tile(const SpmmArgs& a, int64_t q, __mmask16 lm, int k0, int k1) {
  if (a.map.row_len)
    return avx512::spmm_pack_mapped(a, q, static_cast<int>(a.q1 - q < kTile ? a.q1 - q : kTile), k0, k1,
                                           a.pack, kTile, 16, kTile);
  const float* x = a.in + q;
  const int next_w = static_cast<int>(a.q1 - q - kTile < kTile ? a.q1 - q - kTile : kTile);
  for (int k = k0; k < k1; ++k) {
    const float* src = x + a.col_off[k];
    if (next_w > 0) spmm_prefetch_run(src + kTile, next_w);
    float* dst = a.pack + int64_t(k - k0) * kTile;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_store_ps(dst + 16 * v, load<NV, MASK>(src + 16 * v, v, lm));
  }
}

template <int NV, bool MASK, class Act>
void rows(const SpmmArgs& a, int64_t q, __mmask16 lm, const Act& act) {
  spmm_tile_rows<kTile>(
      a, q, [&](int k0, int k1) { pack_tile<NV, MASK>(a, q, lm, k0, k1); },
      [&](int p, const float* x, int64_t stride) { rows_as<NV, MASK, true>(a, p, x, stride, q, lm, act); },
      [&](const float* x) { rows_as<NV, MASK, false>(a, 0, x, -1, q, lm, act); });
}

// One position (a matrix-vector product: a linear layer on one token): 16 nonzeros per step,
// their inputs gathered, instead of a one-lane vector load per nonzero.
template <bool AFFINE>
void spmv(const SpmmArgs& a) {
  const float* x = a.in + spmm_source(a, a.q0);
  const __m512i stride = _mm512_set1_epi32(static_cast<int32_t>(AFFINE ? a.col_stride : 0));
  auto offsets = [&](__m512i c, __mmask16 k) {
    return AFFINE ? _mm512_mullo_epi32(c, stride) : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, c, a.col_off, 4);
  };
  // Nonzeros [i, i + 16) of panel p's columns k under mask k (narrow: their place in the panel + k0).
  auto columns = [&](int32_t i, __mmask16 k, int p) {
    if (a.col8)
      return _mm512_add_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, a.col8 + i)),
                              _mm512_set1_epi32(p * a.panel_k));
    return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, a.col + i));
  };
  for (int m = a.m0; m < a.m1; ++m) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int p = 0; p < a.panels; ++p) {
      int32_t i = a.row_start[size_t(p) * a.M + m];
      const int32_t end = a.row_start[size_t(p) * a.M + m + 1];
      for (; i + 32 <= end; i += 32) {
        const __m512i c0 = columns(i, 0xFFFF, p), c1 = columns(i + 16, 0xFFFF, p);
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.val + i), _mm512_i32gather_ps(offsets(c0, 0xFFFF), x, 4), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a.val + i + 16), _mm512_i32gather_ps(offsets(c1, 0xFFFF), x, 4), acc1);
      }
      for (; i < end; i += 16) {
        const int n = end - i < 16 ? end - i : 16;
        const __mmask16 k = static_cast<__mmask16>((1u << n) - 1);
        const __m512i c = columns(i, k, p);
        const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, offsets(c, k), x, 4);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a.val + i), xv, acc0);
      }
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + (a.bias ? a.bias[m] : 0.f);
    if (a.residual) s += a.residual[m * a.ldo + a.q0];
    a.out[m * a.ldo + a.q0] = apply_activation(s, a.act, a.alpha, a.beta);
  }
}

}  // namespace

void spmm_kernel_avx512(const SpmmArgs& a) {
  // (A single position with implicit padding goes through the tiles: spmv reads every tap.)
  if (a.q1 - a.q0 == 1 && a.map.taps() == 0) return a.col_stride >= 0 ? spmv<true>(a) : spmv<false>(a);
  avx512::with_activation(a.act, a.alpha, a.beta, [&](const auto& act) {
    int64_t q = a.q0;
    for (; q + kTile <= a.q1; q += kTile) rows<4, false>(a, q, 0xFFFF, act);
    const int w = static_cast<int>(a.q1 - q);
    if (w <= 0) return;
    const int nv = (w + 15) / 16, last = w - 16 * (nv - 1);
    const __mmask16 lm = last == 16 ? __mmask16(0xFFFF) : __mmask16((1u << last) - 1);
    switch (nv) {
      case 4: return rows<4, true>(a, q, lm, act);
      case 3: return rows<3, true>(a, q, lm, act);
      case 2: return rows<2, true>(a, q, lm, act);
      default: return rows<1, true>(a, q, lm, act);
    }
  });
}

}  // namespace si
