// AVX2+FMA row softmax: one pass writes x * scale + mask and tracks the maximum, one writes
// exp(v - max) and sums it, one scales by 1 / sum. Row tails use masked loads and stores.
#include <immintrin.h>

#include <limits>

#include "kernels/avx2/vec_math.h"
#include "kernels/softmax.h"

namespace si {
void softmax_rows_avx2(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, float scale,
                       const float* mask, int64_t mask_ld) {
  const int64_t n8 = n / 8 * 8;
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n - n8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    const float* mr = mask ? mask + r * mask_ld : nullptr;
    __m256 vmax = neg_inf;
    int64_t i = 0;
    for (; i < n8; i += 8) {
      __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xr + i), vscale);
      if (mr) v = _mm256_add_ps(v, _mm256_loadu_ps(mr + i));
      _mm256_storeu_ps(yr + i, v);
      vmax = _mm256_max_ps(vmax, v);
    }
    if (i < n) {
      __m256 v = _mm256_mul_ps(_mm256_maskload_ps(xr + i, tail), vscale);
      if (mr) v = _mm256_add_ps(v, _mm256_maskload_ps(mr + i, tail));
      _mm256_maskstore_ps(yr + i, tail, v);
      vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(neg_inf, v, _mm256_castsi256_ps(tail)));
    }
    const __m256 m = _mm256_set1_ps(avx2::hmax_ps(vmax));
    __m256 vsum = _mm256_setzero_ps();
    for (i = 0; i < n8; i += 8) {
      const __m256 e = avx2::exp_ps(_mm256_sub_ps(_mm256_loadu_ps(yr + i), m));
      _mm256_storeu_ps(yr + i, e);
      vsum = _mm256_add_ps(vsum, e);
    }
    if (i < n) {
      const __m256 e = avx2::exp_ps(_mm256_sub_ps(_mm256_maskload_ps(yr + i, tail), m));
      _mm256_maskstore_ps(yr + i, tail, e);
      vsum = _mm256_add_ps(vsum, _mm256_and_ps(e, _mm256_castsi256_ps(tail)));
    }
    const __m256 inv = _mm256_set1_ps(1.f / avx2::hsum_ps(vsum));
    for (i = 0; i < n8; i += 8) _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_loadu_ps(yr + i), inv));
    if (i < n) _mm256_maskstore_ps(yr + i, tail, _mm256_mul_ps(_mm256_maskload_ps(yr + i, tail), inv));
  }
}

}  // namespace si
