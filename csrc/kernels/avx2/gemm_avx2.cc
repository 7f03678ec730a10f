// AVX2+FMA f32 GEMM microkernel: 6 rows x 16 columns (12 ymm accumulators, two B vectors per
// k, one broadcast of A per row). N edges use vmaskmov loads/stores (fault-free when masked).
#include <immintrin.h>

#include <chrono>

#include "kernels/avx2/vec_math.h"
#include "kernels/gemm.h"

namespace si {
namespace {

constexpr int kNr = 16;

template <int R>
void ukernel(const GemmUkArgs& g) {
  // Short tiles (M = 1 MLP layers) split k into KU interleaved sums to have >= 8 FMA chains.
  constexpr int KU = R <= 3 ? 2 : 1;
  __m256 c0[KU][R], c1[KU][R];
  for (int u = 0; u < KU; ++u)
    for (int r = 0; r < R; ++r) c0[u][r] = c1[u][r] = _mm256_setzero_ps();
  const size_t lda = static_cast<size_t>(g.lda);
  const float* b = g.b;
  const float* ar[R];
  for (int r = 0; r < R; ++r) ar[r] = g.a + r * lda;
  const int kc = g.kc;
  int k = 0;
  if (KU > 1) {
    for (; k + KU <= kc; k += KU) {
#pragma GCC unroll 4
      for (int u = 0; u < KU; ++u) {
        const __m256 b0 = _mm256_loadu_ps(b + u * kNr);
        const __m256 b1 = _mm256_loadu_ps(b + u * kNr + 8);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m256 av = _mm256_broadcast_ss(ar[r] + k + u);
          c0[u][r] = _mm256_fmadd_ps(av, b0, c0[u][r]);
          c1[u][r] = _mm256_fmadd_ps(av, b1, c1[u][r]);
        }
      }
      b += KU * kNr;
    }
  }
  for (; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    b += kNr;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(ar[r] + k);
      c0[0][r] = _mm256_fmadd_ps(av, b0, c0[0][r]);
      c1[0][r] = _mm256_fmadd_ps(av, b1, c1[0][r]);
    }
  }
  // Spill the accumulators once to a constant-indexed buffer: indexing the register arrays
  // with the epilogue's runtime row loop makes GCC keep them in memory inside the k loop.
  alignas(64) float acc[R][2 * 8];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    __m256 s0 = c0[0][r], s1 = c1[0][r];
    for (int u = 1; u < KU; ++u) {
      s0 = _mm256_add_ps(s0, c0[u][r]);
      s1 = _mm256_add_ps(s1, c1[u][r]);
    }
    _mm256_store_ps(acc[r], s0);
    _mm256_store_ps(acc[r] + 8, s1);
  }

  const int nr = g.nr;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), iota);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), iota);
  const bool full = nr == kNr;
  auto load = [&](const float* p, __m256i m) { return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m); };
  __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
  const bool add_bias = g.first && g.bias;
  if (add_bias) {
    bias0 = load(g.bias, m0);
    bias1 = load(g.bias + 8, m1);
  }
  const size_t ldc = static_cast<size_t>(g.ldc);
  for (int r = 0; r < R; ++r) {
    float* c = g.c + r * ldc;
    __m256 v0 = _mm256_load_ps(acc[r]), v1 = _mm256_load_ps(acc[r] + 8);
    if (g.first) {
      if (add_bias) {
        v0 = _mm256_add_ps(v0, bias0);
        v1 = _mm256_add_ps(v1, bias1);
      }
      if (g.residual) {
        const float* res = g.residual + r * ldc;
        v0 = _mm256_add_ps(v0, load(res, m0));
        v1 = _mm256_add_ps(v1, load(res + 8, m1));
      }
    } else {
      v0 = _mm256_add_ps(v0, load(c, m0));
      v1 = _mm256_add_ps(v1, load(c + 8, m1));
    }
    if (g.last && g.act != Activation::kNone) {
      v0 = avx2::activate(v0, g.act, g.alpha, g.beta);
      v1 = avx2::activate(v1, g.act, g.alpha, g.beta);
    }
    if (full) {
      _mm256_storeu_ps(c, v0);
      _mm256_storeu_ps(c + 8, v1);
    } else {
      _mm256_maskstore_ps(c, m0, v0);
      _mm256_maskstore_ps(c + 8, m1, v1);
    }
  }
}

}  // namespace

void gemm_ukernel_avx2(const GemmUkArgs& g) {
  switch (g.mr) {
    case 6: return ukernel<6>(g);
    case 5: return ukernel<5>(g);
    case 4: return ukernel<4>(g);
    case 3: return ukernel<3>(g);
    case 2: return ukernel<2>(g);
    default: return ukernel<1>(g);
  }
}

double gemm_fma_peak_probe_avx2(double seconds) {
  // 12 named accumulators (16 ymm registers; an array lets GCC keep them in memory).
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  // Distinct starting values, or the compiler merges the identical chains into one.
  __m256 a0 = _mm256_set1_ps(0e-3f), a1 = _mm256_set1_ps(1e-3f), a2 = _mm256_set1_ps(2e-3f), a3 = _mm256_set1_ps(3e-3f), a4 = _mm256_set1_ps(4e-3f), a5 = _mm256_set1_ps(5e-3f), a6 = _mm256_set1_ps(6e-3f), a7 = _mm256_set1_ps(7e-3f);
  __m256 a8 = _mm256_set1_ps(8e-3f), a9 = _mm256_set1_ps(9e-3f), a10 = _mm256_set1_ps(10e-3f), a11 = _mm256_set1_ps(11e-3f);
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  long iters = 0;
  do {
    for (int it = 0; it < 4096; ++it) {
#define SI_FMA4(p, q, r, s)            \
  p = _mm256_fmadd_ps(p, x, y);         \
  q = _mm256_fmadd_ps(q, x, y);         \
  r = _mm256_fmadd_ps(r, x, y);         \
  s = _mm256_fmadd_ps(s, x, y);
      SI_FMA4(a0, a1, a2, a3)
      SI_FMA4(a4, a5, a6, a7)
      SI_FMA4(a8, a9, a10, a11)
#undef SI_FMA4
    }
    iters += 4096;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (elapsed < seconds);
  const __m256 s = _mm256_add_ps(
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                  _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)),
                  _mm256_setzero_ps()));
  volatile float sink = _mm256_cvtss_f32(s);
  (void)sink;
  return iters * 12.0 * 8 * 2 / elapsed * 1e-9;
}

}  // namespace si
