// AVX-512 instantiation of the NCHW16c conv kernels (conv_impl.h): 4 filter blocks x 6 pixels
// = 24 zmm accumulators for direct/1x1/first-layer, 8 pixels for depthwise.
#include <immintrin.h>

#include <cstddef>

#include "kernels/avx512/vec_math.h"
#include "kernels/conv.h"

namespace si::avx512 {

struct V {
  using T = __m512;
  static constexpr int B = 16, kMaxFB = 4, kMaxP = 6, kMaxPnchw = 6, kMaxPdw = 8;
  static T zero() { return _mm512_setzero_ps(); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T bcast(const float* p) { return _mm512_set1_ps(*p); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T act(T v, Activation a, float alpha, float beta) { return activate(v, a, alpha, beta); }
  static T mask(T v, int n) { return _mm512_maskz_mov_ps(__mmask16((1u << n) - 1u), v); }
};

#include "kernels/conv_impl.h"

}  // namespace si::avx512
