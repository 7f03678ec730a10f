// AVX-512 f32 GEMM microkernel: 14 rows x 32 columns (28 zmm accumulators, two B vectors per k,
// A broadcast straight from memory as an embedded-broadcast FMA operand). Zen 4 executes one
// 512-bit FMA per cycle and three loads per cycle, so 28 FMAs against 2 + 14 loads per k keep
// the FMA pipe the bottleneck. N edges are masked loads/stores; M edges are template rows.
#include <immintrin.h>

#include <chrono>

#include "kernels/avx512/vec_math.h"
#include "kernels/gemm.h"

// GCC 12 reports the _mm512_undefined_ps() pass-through of unmasked AVX-512 builtins.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace si {
namespace {

constexpr int kNr = 32;

template <int R>
void ukernel(const GemmUkArgs& g) {
  // Few rows mean few independent FMA chains (2 per row): with 4-cycle FMA latency and two FMA
  // pipes, 8 are needed, so short tiles (M = 1 MLP layers) split k into KU interleaved sums.
  constexpr int KU = R <= 3 ? 2 : 1;
  __m512 c0[KU][R], c1[KU][R];
  for (int u = 0; u < KU; ++u)
    for (int r = 0; r < R; ++r) c0[u][r] = c1[u][r] = _mm512_setzero_ps();
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
        const __m512 b0 = _mm512_loadu_ps(b + u * kNr);
        const __m512 b1 = _mm512_loadu_ps(b + u * kNr + 16);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          const __m512 av = _mm512_set1_ps(ar[r][k + u]);
          c0[u][r] = _mm512_fmadd_ps(av, b0, c0[u][r]);
          c1[u][r] = _mm512_fmadd_ps(av, b1, c1[u][r]);
        }
      }
      b += KU * kNr;
    }
  }
  for (; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
    b += kNr;
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(ar[r][k]);
      c0[0][r] = _mm512_fmadd_ps(av, b0, c0[0][r]);
      c1[0][r] = _mm512_fmadd_ps(av, b1, c1[0][r]);
    }
  }
  // Spill the accumulators once to a constant-indexed buffer: indexing the register arrays
  // with the epilogue's runtime row loop makes GCC keep them in memory inside the k loop.
  alignas(64) float acc[R][2 * 16];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    __m512 s0 = c0[0][r], s1 = c1[0][r];
    for (int u = 1; u < KU; ++u) {
      s0 = _mm512_add_ps(s0, c0[u][r]);
      s1 = _mm512_add_ps(s1, c1[u][r]);
    }
    _mm512_store_ps(acc[r], s0);
    _mm512_store_ps(acc[r] + 16, s1);
  }

  const int nr = g.nr;
  const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF) : nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
  __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
  const bool add_bias = g.first && g.bias;
  if (add_bias) {
    bias0 = _mm512_maskz_loadu_ps(m0, g.bias);
    bias1 = _mm512_maskz_loadu_ps(m1, g.bias + 16);
  }
  const size_t ldc = static_cast<size_t>(g.ldc);
  for (int r = 0; r < R; ++r) {
    float* c = g.c + r * ldc;
    __m512 v0 = _mm512_load_ps(acc[r]), v1 = _mm512_load_ps(acc[r] + 16);
    if (g.first) {
      if (add_bias) {
        v0 = _mm512_add_ps(v0, bias0);
        v1 = _mm512_add_ps(v1, bias1);
      }
      if (g.residual) {
        const float* res = g.residual + r * ldc;
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, res));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, res + 16));
      }
    } else {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
    }
    if (g.last && g.act != Activation::kNone) {
      v0 = avx512::activate(v0, g.act, g.alpha, g.beta);
      v1 = avx512::activate(v1, g.act, g.alpha, g.beta);
    }
    _mm512_mask_storeu_ps(c, m0, v0);
    _mm512_mask_storeu_ps(c + 16, m1, v1);
  }
}

}  // namespace

void gemm_ukernel_avx512(const GemmUkArgs& g) {
  switch (g.mr) {
    case 14: return ukernel<14>(g);
    case 13: return ukernel<13>(g);
    case 12: return ukernel<12>(g);
    case 11: return ukernel<11>(g);
    case 10: return ukernel<10>(g);
    case 9: return ukernel<9>(g);
    case 8: return ukernel<8>(g);
    case 7: return ukernel<7>(g);
    case 6: return ukernel<6>(g);
    case 5: return ukernel<5>(g);
    case 4: return ukernel<4>(g);
    case 3: return ukernel<3>(g);
    case 2: return ukernel<2>(g);
    default: return ukernel<1>(g);
  }
}

double gemm_fma_peak_probe_avx512(double seconds) {
  // 16 named accumulators (an array lets GCC interchange the loops and keep them in memory).
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  // Distinct starting values, or the compiler merges the identical chains into one.
  __m512 a0 = _mm512_set1_ps(0e-3f), a1 = _mm512_set1_ps(1e-3f), a2 = _mm512_set1_ps(2e-3f), a3 = _mm512_set1_ps(3e-3f), a4 = _mm512_set1_ps(4e-3f), a5 = _mm512_set1_ps(5e-3f), a6 = _mm512_set1_ps(6e-3f), a7 = _mm512_set1_ps(7e-3f);
  __m512 a8 = _mm512_set1_ps(8e-3f), a9 = _mm512_set1_ps(9e-3f), a10 = _mm512_set1_ps(10e-3f), a11 = _mm512_set1_ps(11e-3f), a12 = _mm512_set1_ps(12e-3f), a13 = _mm512_set1_ps(13e-3f), a14 = _mm512_set1_ps(14e-3f), a15 = _mm512_set1_ps(15e-3f);
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  long iters = 0;
  do {
    for (int it = 0; it < 4096; ++it) {
#define SI_FMA4(p, q, r, s)            \
  p = _mm512_fmadd_ps(p, x, y);         \
  q = _mm512_fmadd_ps(q, x, y);         \
  r = _mm512_fmadd_ps(r, x, y);         \
  s = _mm512_fmadd_ps(s, x, y);
      SI_FMA4(a0, a1, a2, a3)
      SI_FMA4(a4, a5, a6, a7)
      SI_FMA4(a8, a9, a10, a11)
      SI_FMA4(a12, a13, a14, a15)
#undef SI_FMA4
    }
    iters += 4096;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (elapsed < seconds);
  const __m512 s = _mm512_add_ps(
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                  _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))),
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                  _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return iters * 16.0 * 16 * 2 / elapsed * 1e-9;
}

}  // namespace si
