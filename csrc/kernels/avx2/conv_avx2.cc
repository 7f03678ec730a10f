// AVX2 instantiation of the NCHW8c conv kernels (conv_impl.h): 2 filter blocks x 6 pixels
// = 12 ymm accumulators (16 registers), 8 pixels for depthwise.
#include <immintrin.h>

#include <cstddef>

#include "kernels/avx2/vec_math.h"
#include "kernels/conv.h"

namespace si::avx2 {

struct V {
  using T = __m256;
  static constexpr int B = 8, kMaxFB = 2, kMaxP = 6, kMaxPnchw = 5, kMaxPdw = 8;
  static T zero() { return _mm256_setzero_ps(); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T act(T v, Activation a, float alpha, float beta) { return activate(v, a, alpha, beta); }
  static T mask(T v, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane)));
  }
};

#include "kernels/conv_impl.h"

}  // namespace si::avx2
