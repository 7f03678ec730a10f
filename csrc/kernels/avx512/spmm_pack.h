// Packing a mapped spmm input (a conv's output pixels over padded phase planes: SpmmInputMap)
// for the AVX-512 spmm kernels, which lay the packed rows out differently (the row kernel: row
// k's vectors side by side; the generated code: one slice per vector). Include only from files
// compiled with AVX-512 flags.
#pragma once
#include <immintrin.h>

#include "kernels/spmm.h"

namespace si::avx512 {

// Input rows [k0, k1) of the positions [q, q + w) (w <= MAX_W): vector v of row k at
// dst + (k - k0) * row_stride + v * vector_stride, each assembled from masked loads of the
// input-row runs it spans, lanes past the tile zero. The next tile's run (up to next_max
// positions from q + w) is prefetched (one run: a tile rarely spans an image row's end).
template <int MAX_W>
inline void spmm_pack_mapped(const SpmmArgs& a, int64_t q, int w, int k0, int k1, float* dst, int64_t row_stride,
                             int64_t vector_stride, int next_max) {
  struct Piece {
    int v;
    __mmask16 lanes;
    int64_t off;
  };
  Piece pieces[MAX_W + MAX_W / 16];  // a run per position at most, + one split per vector
  int n = 0;
  spmm_tile_pieces<16>(a, q, w, [&](int v, int l0, int l1, int64_t off) {
    pieces[n++] = {v, static_cast<__mmask16>(((1u << l1) - 1) & ~((1u << l0) - 1)), off};
  });
  const int64_t next = q + w < a.q1 ? spmm_source(a, q + w) : -1;
  const int next_w = static_cast<int>(a.q1 - q - w < next_max ? a.q1 - q - w : next_max);
  for (int k = k0; k < k1; ++k) {
    const float* src = a.in + a.col_off[k];
    if (next >= 0) spmm_prefetch_run(src + next, next_w);
    float* d = dst + int64_t(k - k0) * row_stride;
    __m512 vec = _mm512_setzero_ps();
    int cur = pieces[0].v;
    for (int i = 0; i < n; ++i) {
      if (pieces[i].v != cur) {
        _mm512_store_ps(d + cur * vector_stride, vec);
        vec = _mm512_setzero_ps();
        cur = pieces[i].v;
      }
      vec = _mm512_mask_loadu_ps(vec, pieces[i].lanes, src + pieces[i].off);
    }
    _mm512_store_ps(d + cur * vector_stride, vec);
  }
}

}  // namespace si::avx512
