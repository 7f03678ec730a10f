// AVX-512 vector activations for kernel epilogues; must match apply_activation() (epilogue.h)
// to a few ulp. Include only from files compiled with AVX-512 flags.
#pragma once
#include <immintrin.h>

#include "kernels/epilogue.h"

namespace si::avx512 {

// exp(x) by range reduction to 2^n * exp(r), |r| <= ln2/2, and a degree-6 polynomial
// (Cephes coefficients); relative error ~1e-7 over the clamped range.
// Below -87.3 the result is 0 and NaN stays NaN (see avx2::exp_ps).
inline __m512 exp_ps(__m512 x) {
  const __m512 x0 = x;
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
  const __m512 y = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x0, _mm512_set1_ps(-87.3f), _CMP_GE_OQ),
                                       _mm512_scalef_ps(p, n));
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q), x0);
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

// erf(x) as x * P(x^2) / Q(x^2) on x clamped to [-4, 4] (outside, erf is +-1 in float): the
// rational approximation of Eigen / XLA, max abs error ~4e-7 and relative error ~4e-7 near 0.
inline __m512 erf_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-4.f)), _mm512_set1_ps(4.f));
  const __m512 x2 = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-2.72614225801306e-10f);
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(2.77068142495902e-08f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-2.10102402082508e-06f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-5.69250639462346e-05f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-7.34990630326855e-04f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-2.95459980854025e-03f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-1.60960333262415e-02f));
  p = _mm512_mul_ps(p, x);
  __m512 q = _mm512_set1_ps(-1.45660718464996e-05f);
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-2.13374055278905e-04f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.68282697438203e-03f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-7.37332916720468e-03f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.42647390514189e-02f));
  return _mm512_div_ps(p, q);
}

// 0.5 x (1 + erf(x / sqrt 2))
inline __m512 gelu_ps(__m512 x) {
  const __m512 e = erf_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)));
  return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(e, _mm512_set1_ps(1.f)));
}

// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
inline __m512 gelu_tanh_ps(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  const __m512 u = _mm512_mul_ps(_mm512_fmadd_ps(x3, _mm512_set1_ps(0.044715f), x), _mm512_set1_ps(0.79788456080286536f));
  return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(tanh_ps(u), _mm512_set1_ps(1.f)));
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
    case Activation::kGelu: return gelu_ps(v);
    case Activation::kGeluTanh: return gelu_tanh_ps(v);
    case Activation::kErf: return erf_ps(v);
    case Activation::kSqrt: return _mm512_sqrt_ps(v);
  }
  return v;
}

// The activation as a functor chosen once per kernel call (with_activation): an epilogue that
// switches per vector reloads act/alpha/beta after every store (floats the stores may alias)
// and jumps through a table, which cost the spmm row loop a fifth of its time on short rows.
struct NoActivation {
  __m512 operator()(__m512 v) const { return v; }
};
struct ReluActivation {
  __m512 operator()(__m512 v) const { return _mm512_max_ps(v, _mm512_setzero_ps()); }
};
struct AnyActivation {
  Activation act;
  float alpha, beta;
  __m512 operator()(__m512 v) const { return activate(v, act, alpha, beta); }
};
template <class F>
inline void with_activation(Activation act, float alpha, float beta, const F& f) {
  if (act == Activation::kNone) return f(NoActivation{});
  if (act == Activation::kRelu) return f(ReluActivation{});
  f(AnyActivation{act, alpha, beta});
}

}  // namespace si::avx512
