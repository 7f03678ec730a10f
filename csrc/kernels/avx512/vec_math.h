// AVX-512 vector activations for kernel epilogues; must match apply_activation() (epilogue.h)
// to a few ulp. Include only from files compiled with AVX-512 flags.
#pragma once
#include <immintrin.h>

#include "kernels/epilogue.h"

namespace si::avx512 {

// exp(x) by range reduction to 2^n * exp(r), |r| <= ln2/2, and a degree-6 polynomial
// (Cephes coefficients); relative error ~1e-7 over the clamped range.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

inline __m512 sigmoid_ps(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

inline __m512 tanh_ps(__m512 x) {
  // tanh(x) = 2 * sigmoid(2x) - 1; for |x| small use x directly to keep relative accuracy.
  const __m512 t = _mm512_fmsub_ps(_mm512_set1_ps(2.f), sigmoid_ps(_mm512_add_ps(x, x)), _mm512_set1_ps(1.f));
  const __mmask16 small = _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(1e-4f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(small, t, x);
}

inline __m512 activate(__m512 v, Activation act, float alpha, float beta) {
  switch (act) {
    case Activation::kNone: return v;
    case Activation::kRelu: return _mm512_max_ps(v, _mm512_setzero_ps());
    case Activation::kClip:
      return _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(alpha)), _mm512_set1_ps(beta));
    case Activation::kSigmoid: return sigmoid_ps(v);
    case Activation::kHardSigmoid:
      return _mm512_min_ps(_mm512_max_ps(_mm512_fmadd_ps(v, _mm512_set1_ps(alpha), _mm512_set1_ps(beta)),
                                         _mm512_setzero_ps()), _mm512_set1_ps(1.f));
    case Activation::kHardSwish: {
      __m512 g = _mm512_fmadd_ps(v, _mm512_set1_ps(1.f / 6.f), _mm512_set1_ps(0.5f));
      g = _mm512_min_ps(_mm512_max_ps(g, _mm512_setzero_ps()), _mm512_set1_ps(1.f));
      return _mm512_mul_ps(v, g);
    }
    case Activation::kSilu: return _mm512_mul_ps(v, sigmoid_ps(v));
    case Activation::kTanh: return tanh_ps(v);
  }
  return v;
}

}  // namespace si::avx512
