// Packing a mapped spmm input (a conv's output pixels over padded phase planes: SpmmInputMap)
// for the AVX-512 spmm kernels, which lay the packed rows out differently (the row kernel: row
// k's vectors side by side; the generated code: one slice per vector). Include only from files
// compiled with AVX-512 flags.
#pragma once
#include <immintrin.h>

#include "kernels/spmm.h"

namespace si::avx512 {

// Input rows [k0, k1) of the positions [q, q + w): vector v of row k at
// dst + (k - k0) * row_stride + v * vector_stride, each assembled from masked loads of the
// input-row runs it spans, lanes past the tile (and, with implicit padding, lanes whose tap
// falls outside the plane) zero. The next tile's run (up to next_max positions from q + w) is
// prefetched (one run: a tile rarely spans an image row's end).
inline void spmm_pack_mapped(const SpmmArgs& a, int64_t q, int w, int k0, int k1, float* dst, int64_t row_stride,
                             int64_t vector_stride, int next_max) {
  struct Piece {
    int v;
    __mmask16 lanes;
    int64_t off;
  };
  const int taps = a.map.taps();
  const SpmmPieceLists<Piece> lists = spmm_piece_lists<Piece, 16>(a, q, w, [](int v, int l0, int l1, int64_t off) {
    return Piece{v, static_cast<__mmask16>(((1u << l1) - 1) & ~((1u << l0) - 1)), off};
  });
  const int nv = (w + 15) / 16;
  const int64_t next = q + w < a.q1 ? spmm_source(a, q + w) : -1;
  const int next_w = static_cast<int>(a.q1 - q - w < next_max ? a.q1 - q - w : next_max);
  const Piece* const pieces = lists.pieces;
  for (int k = k0, t = taps > 0 ? k0 % taps : 0; k < k1; ++k, t = t + 1 >= taps ? 0 : t + 1) {
    const float* src = a.in + a.col_off[k];
    if (next >= 0) spmm_prefetch_run(src + next, next_w);
    float* d = dst + int64_t(k - k0) * row_stride;
    int i = lists.starts[t];
    const int end = lists.starts[t + 1];
    for (int v = 0; v < nv; ++v) {
      __m512 vec = _mm512_setzero_ps();
      for (; i < end && pieces[i].v == v; ++i) vec = _mm512_mask_loadu_ps(vec, pieces[i].lanes, src + pieces[i].off);
      _mm512_store_ps(d + v * vector_stride, vec);
    }
  }
}

}  // namespace si::avx512
