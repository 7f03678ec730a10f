// AVX2 vector activations for kernel epilogues; must match apply_activation() (epilogue.h)
// to a few ulp. Include only from files compiled with AVX2+FMA flags.
#pragma once
#include <immintrin.h>

#include "kernels/epilogue.h"

namespace si::avx2 {

// Same range reduction and polynomial as si::avx512::exp_ps.
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  // 2^n: n is in [-126, 127] after the clamp, so build the exponent bits directly.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 sigmoid_ps(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

inline __m256 tanh_ps(__m256 x) {
  const __m256 t = _mm256_fmsub_ps(_mm256_set1_ps(2.f), sigmoid_ps(_mm256_add_ps(x, x)), _mm256_set1_ps(1.f));
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
  const __m256 small = _mm256_cmp_ps(ax, _mm256_set1_ps(1e-4f), _CMP_LT_OQ);
  return _mm256_blendv_ps(t, x, small);
}

inline __m256 activate(__m256 v, Activation act, float alpha, float beta) {
  switch (act) {
    case Activation::kNone: return v;
    case Activation::kRelu: return _mm256_max_ps(v, _mm256_setzero_ps());
    case Activation::kClip:
      return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(alpha)), _mm256_set1_ps(beta));
    case Activation::kSigmoid: return sigmoid_ps(v);
    case Activation::kHardSigmoid:
      return _mm256_min_ps(_mm256_max_ps(_mm256_fmadd_ps(v, _mm256_set1_ps(alpha), _mm256_set1_ps(beta)),
                                         _mm256_setzero_ps()), _mm256_set1_ps(1.f));
    case Activation::kHardSwish: {
      __m256 g = _mm256_fmadd_ps(v, _mm256_set1_ps(1.f / 6.f), _mm256_set1_ps(0.5f));
      g = _mm256_min_ps(_mm256_max_ps(g, _mm256_setzero_ps()), _mm256_set1_ps(1.f));
      return _mm256_mul_ps(v, g);
    }
    case Activation::kSilu: return _mm256_mul_ps(v, sigmoid_ps(v));
    case Activation::kTanh: return tanh_ps(v);
  }
  return v;
}

}  // namespace si::avx2
