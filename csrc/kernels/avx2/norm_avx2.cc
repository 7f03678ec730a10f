// AVX2+FMA layer normalisation rows: two passes over each row (mean, then the centred sum of
// squares, which is exact enough in float for rows of thousands), then one fused
// (x - mean) * (gamma * rstd) + beta pass. Row tails use masked loads/stores.
#include <immintrin.h>

#include <cmath>

#include "kernels/avx2/vec_math.h"
#include "kernels/norm.h"

namespace si {
namespace {

inline __m256i tail_mask(int64_t rem) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(rem)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace

void layer_norm_rows_avx2(const float* x, const float* gamma, const float* beta, float* y, int64_t r0,
                          int64_t r1, int64_t n, float eps, float* mean_out, float* rstd_out) {
  const int64_t n32 = n / 32 * 32, n8 = n / 8 * 8;
  const __m256i mask = tail_mask(n - n8);
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i < n32; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + i));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_loadu_ps(xr + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_loadu_ps(xr + i + 24));
    }
    for (; i < n8; i += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + i));
    if (i < n) s1 = _mm256_add_ps(s1, _mm256_maskload_ps(xr + i, mask));
    const float mean = avx2::hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) / float(n);
    const __m256 vm = _mm256_set1_ps(mean);

    s0 = s1 = s2 = s3 = _mm256_setzero_ps();
    i = 0;
    for (; i < n32; i += 32) {
      const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + i), vm);
      const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 8), vm);
      const __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 16), vm);
      const __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 24), vm);
      s0 = _mm256_fmadd_ps(d0, d0, s0);
      s1 = _mm256_fmadd_ps(d1, d1, s1);
      s2 = _mm256_fmadd_ps(d2, d2, s2);
      s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i < n8; i += 8) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + i), vm);
      s0 = _mm256_fmadd_ps(d, d, s0);
    }
    if (i < n) {
      // Masked-off lanes load 0, so subtract the mean only where the mask is set.
      const __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + i, mask), vm), _mm256_castsi256_ps(mask));
      s1 = _mm256_fmadd_ps(d, d, s1);
    }
    const float var = avx2::hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) / float(n);
    const float rs = 1.f / std::sqrt(var + eps);
    const __m256 rstd = _mm256_set1_ps(rs);
    if (mean_out) mean_out[r] = mean;
    if (rstd_out) rstd_out[r] = rs;

    i = 0;
    for (; i < n8; i += 8) {
      const __m256 g = _mm256_mul_ps(_mm256_loadu_ps(gamma + i), rstd);
      const __m256 b = beta ? _mm256_loadu_ps(beta + i) : _mm256_setzero_ps();
      _mm256_storeu_ps(yr + i, _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), vm), g, b));
    }
    if (i < n) {
      const __m256 g = _mm256_mul_ps(_mm256_maskload_ps(gamma + i, mask), rstd);
      const __m256 b = beta ? _mm256_maskload_ps(beta + i, mask) : _mm256_setzero_ps();
      const __m256 v = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + i, mask), vm), g, b);
      _mm256_maskstore_ps(yr + i, mask, v);
    }
  }
}

}  // namespace si
