// AVX2 vector activations for kernel epilogues; must match apply_activation() (epilogue.h)
// to a few ulp. Include only from files compiled with AVX2+FMA flags.
#pragma once
#include <immintrin.h>

#include "kernels/epilogue.h"

namespace si::avx2 {

// Horizontal sum / maximum of the 8 lanes.
inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax_ps(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Same range reduction and polynomial as si::avx512::exp_ps.
// Below -87.3 the result is 0 (not the clamp's 1e-38: a softmax over -inf entries must give
// exact zeros), and NaN stays NaN (a softmax row of only -inf is NaN, as in ONNX).
inline __m256 exp_ps(__m256 x) {
  const __m256 x0 = x;
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
  const __m256 y = _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)),
                                 _mm256_cmp_ps(x0, _mm256_set1_ps(-87.3f), _CMP_GE_OQ));
  return _mm256_blendv_ps(y, x0, _mm256_cmp_ps(x0, x0, _CMP_UNORD_Q));
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

// erf(x) as x * P(x^2) / Q(x^2) on x clamped to [-4, 4] (outside, erf is +-1 in float): the
// rational approximation of Eigen / XLA, max abs error ~4e-7 and relative error ~4e-7 near 0.
inline __m256 erf_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-4.f)), _mm256_set1_ps(4.f));
  const __m256 x2 = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-2.72614225801306e-10f);
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.77068142495902e-08f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-2.10102402082508e-06f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-5.69250639462346e-05f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-7.34990630326855e-04f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-2.95459980854025e-03f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-1.60960333262415e-02f));
  p = _mm256_mul_ps(p, x);
  __m256 q = _mm256_set1_ps(-1.45660718464996e-05f);
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-2.13374055278905e-04f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.68282697438203e-03f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-7.37332916720468e-03f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.42647390514189e-02f));
  return _mm256_div_ps(p, q);
}

// 0.5 x (1 + erf(x / sqrt 2))
inline __m256 gelu_ps(__m256 x) {
  const __m256 e = erf_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
  return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(e, _mm256_set1_ps(1.f)));
}

// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
inline __m256 gelu_tanh_ps(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 u = _mm256_mul_ps(_mm256_fmadd_ps(x3, _mm256_set1_ps(0.044715f), x), _mm256_set1_ps(0.79788456080286536f));
  return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(tanh_ps(u), _mm256_set1_ps(1.f)));
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
    case Activation::kGelu: return gelu_ps(v);
    case Activation::kGeluTanh: return gelu_tanh_ps(v);
    case Activation::kErf: return erf_ps(v);
    case Activation::kSqrt: return _mm256_sqrt_ps(v);
  }
  return v;
}

// The activation as a functor chosen once per kernel call (see avx512::with_activation).
struct NoActivation {
  __m256 operator()(__m256 v) const { return v; }
};
struct ReluActivation {
  __m256 operator()(__m256 v) const { return _mm256_max_ps(v, _mm256_setzero_ps()); }
};
struct AnyActivation {
  Activation act;
  float alpha, beta;
  __m256 operator()(__m256 v) const { return activate(v, act, alpha, beta); }
};
template <class F>
inline void with_activation(Activation act, float alpha, float beta, const F& f) {
  if (act == Activation::kNone) return f(NoActivation{});
  if (act == Activation::kRelu) return f(ReluActivation{});
  f(AnyActivation{act, alpha, beta});
}

}  // namespace si::avx2
