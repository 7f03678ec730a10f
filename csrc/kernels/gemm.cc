// f32 GEMM: B packing, the portable (reference) microkernel, blocking/threading driver and the
// one dispatch point of the family (gemm_tile / ukernel_for).
#include "kernels/gemm.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/thread_pool.h"

namespace si {
namespace {

constexpr int kKc = 256;                     // K block: A tile (14 x 256 floats) stays in L1
constexpr size_t kL2BlockBytes = 512 << 10;  // B block (kc x N block) budget: half of Zen 4's L2
constexpr int kMaxMr = 16;
constexpr double kSerialMacs = 1 << 18;      // below this many multiply-adds: one thread

constexpr int kPortableMr = 4, kPortableNr = 8;  // 8 xmm accumulators: no spills with SSE2

GemmUkernel ukernel_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return gemm_ukernel_avx512;
    case Isa::kAvx2: return gemm_ukernel_avx2;
    default: return gemm_ukernel_portable;
  }
}

void check_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_isa()))
    throw std::invalid_argument(std::string("ISA ") + isa_name(isa) +
                                " is not supported by this CPU (best: " + isa_name(best_isa()) + ")");
}

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Packs B into nr-wide K-major panels; dst holds ceil(N/nr) * K * nr floats.
void pack_b(const float* b, int ldb, int K, int N, bool trans_b, int nr, float* dst) {
  const int panels = ceil_div(N, nr);
  for (int p = 0; p < panels; ++p) {
    const int n0 = p * nr, w = std::min(nr, N - n0);
    float* d = dst + static_cast<size_t>(p) * K * nr;
    if (!trans_b) {
      for (int k = 0; k < K; ++k) {
        const float* s = b + static_cast<size_t>(k) * ldb + n0;
        float* dk = d + static_cast<size_t>(k) * nr;
        std::memcpy(dk, s, sizeof(float) * w);
        std::fill(dk + w, dk + nr, 0.f);
      }
    } else {
      // B stored N x K: column n0+j of B^T is row n0+j; walk K in chunks to stay in cache.
      for (int k0 = 0; k0 < K; k0 += 64) {
        const int k1 = std::min(K, k0 + 64);
        for (int j = 0; j < nr; ++j) {
          if (j < w) {
            const float* s = b + static_cast<size_t>(n0 + j) * ldb;
            for (int k = k0; k < k1; ++k) d[static_cast<size_t>(k) * nr + j] = s[k];
          } else {
            for (int k = k0; k < k1; ++k) d[static_cast<size_t>(k) * nr + j] = 0.f;
          }
        }
      }
    }
  }
}

size_t packed_b_floats(int K, int N, int nr) {
  return static_cast<size_t>(ceil_div(N, nr)) * static_cast<size_t>(K) * nr;
}

// The driver: C = epilogue(A * Bpacked). bp: panels of width tile.nr, each K x nr.
void gemm_driver(int M, int N, int K, const float* A, int lda, const float* bp, Isa isa,
                 float* C, int ldc, const Epilogue& ep, ThreadPool* pool) {
  if (M <= 0 || N <= 0) return;
  const GemmTile tile = gemm_tile(isa);
  const GemmUkernel uk = ukernel_for(isa);
  const int MR = tile.mr, NR = tile.nr;
  const int m_tiles = ceil_div(M, MR), n_panels = ceil_div(N, NR);
  const int kc_max = std::max(1, std::min(K, kKc));

  // N block: as many panels as keep the kc x N-block slice of B within the L2 budget.
  int panels_per_nb = std::max<int>(1, static_cast<int>(kL2BlockBytes / (sizeof(float) * kc_max * NR)));
  panels_per_nb = std::min(panels_per_nb, n_panels);
  int tiles_per_mb = m_tiles;  // one M block per task when single-threaded: B block reused by all

  const int threads = pool ? pool->num_threads() : 1;
  const bool parallel = threads > 1 && static_cast<double>(M) * N * std::max(K, 1) >= kSerialMacs;
  if (parallel) {
    // Aim for ~4 tasks per thread (dynamic scheduling evens out ragged edges): split M first
    // (threads then share each B block through L3), then N.
    const int target = 4 * threads;
    int n_blocks = ceil_div(n_panels, panels_per_nb);
    int m_blocks = std::min(m_tiles, std::max(1, ceil_div(target, n_blocks)));
    tiles_per_mb = ceil_div(m_tiles, m_blocks);
    m_blocks = ceil_div(m_tiles, tiles_per_mb);
    if (m_blocks * n_blocks < target) {
      n_blocks = std::min(n_panels, ceil_div(target, m_blocks));
      panels_per_nb = ceil_div(n_panels, n_blocks);
    }
  }
  const int m_blocks = ceil_div(m_tiles, tiles_per_mb);
  const int n_blocks = ceil_div(n_panels, panels_per_nb);
  const size_t panel_stride = static_cast<size_t>(K) * NR;

  auto task = [&](size_t t) {
    const int mb = static_cast<int>(t % m_blocks), nb = static_cast<int>(t / m_blocks);
    const int mt0 = mb * tiles_per_mb, mt1 = std::min(m_tiles, mt0 + tiles_per_mb);
    const int p0 = nb * panels_per_nb, p1 = std::min(n_panels, p0 + panels_per_nb);
    const bool copy_a = (p1 - p0) > 1;
    alignas(64) float abuf[kMaxMr * (kKc + 16)];
    GemmUkArgs args;
    args.ldc = ldc;
    args.act = ep.act;
    args.alpha = ep.alpha;
    args.beta = ep.beta;
    int k0 = 0;
    do {
      const int kc = std::min(kKc, K - k0);
      args.kc = kc;
      args.first = k0 == 0;
      args.last = k0 + kc >= K;
      for (int mt = mt0; mt < mt1; ++mt) {
        const int m0 = mt * MR, mr = std::min(MR, M - m0);
        const float* a = A + static_cast<size_t>(m0) * lda + k0;
        int a_ld = lda;
        if (copy_a && kc > 0) {
          // Row stride kc+16 (one extra cache line) keeps rows off the same L1 sets.
          const int ld = kc + 16;
          for (int r = 0; r < mr; ++r)
            std::memcpy(abuf + r * ld, a + static_cast<size_t>(r) * lda, sizeof(float) * kc);
          a = abuf;
          a_ld = ld;
        }
        args.a = a;
        args.lda = a_ld;
        args.mr = mr;
        for (int p = p0; p < p1; ++p) {
          const int n0 = p * NR;
          args.nr = std::min(NR, N - n0);
          args.b = bp + p * panel_stride + static_cast<size_t>(k0) * NR;
          args.c = C + static_cast<size_t>(m0) * ldc + n0;
          args.bias = ep.bias ? ep.bias + n0 : nullptr;
          args.residual = ep.residual ? ep.residual + static_cast<size_t>(m0) * ldc + n0 : nullptr;
          uk(args);
        }
      }
      k0 += kc;
    } while (k0 < K);
  };

  const size_t num_tasks = static_cast<size_t>(m_blocks) * n_blocks;
  if (parallel && num_tasks > 1) {
    pool->parallel_for(num_tasks, task);
  } else {
    for (size_t t = 0; t < num_tasks; ++t) task(t);
  }
}

}  // namespace

// ---- the portable microkernel (also the reference the ISA variants are tested against) ----

void gemm_ukernel_portable(const GemmUkArgs& g) {
  constexpr int MR = kPortableMr, NR = kPortableNr;
  // GCC/Clang generic vectors (4 floats; SSE2 on baseline x86-64, NEON elsewhere): left to
  // itself the auto-vectoriser vectorises the k loop with shuffles instead of the tile.
  typedef float v4 __attribute__((vector_size(16)));
  constexpr int NV = NR / 4;
  v4 acc4[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc4[r][v] = v4{0.f, 0.f, 0.f, 0.f};
  const float* a[MR];
  for (int r = 0; r < MR; ++r) a[r] = g.a + static_cast<size_t>(r < g.mr ? r : 0) * g.lda;
  for (int k = 0; k < g.kc; ++k) {
    const float* b = g.b + static_cast<size_t>(k) * NR;
    v4 bv[NV];
    std::memcpy(bv, b, sizeof(bv));
    for (int r = 0; r < MR; ++r) {
      const float x = a[r][k];
      const v4 av = {x, x, x, x};
      for (int v = 0; v < NV; ++v) acc4[r][v] += av * bv[v];
    }
  }
  float acc[MR][NR];
  std::memcpy(acc, acc4, sizeof(acc));
  for (int r = 0; r < g.mr; ++r) {
    float* c = g.c + static_cast<size_t>(r) * g.ldc;
    const float* res = g.residual ? g.residual + static_cast<size_t>(r) * g.ldc : nullptr;
    for (int j = 0; j < g.nr; ++j) {
      float v = acc[r][j];
      if (g.first) {
        if (g.bias) v += g.bias[j];
        if (res) v += res[j];
      } else {
        v += c[j];
      }
      if (g.last) v = apply_activation(v, g.act, g.alpha, g.beta);
      c[j] = v;
    }
  }
}

GemmTile gemm_tile(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return {14, 32};
    case Isa::kAvx2: return {6, 16};
    default: return {kPortableMr, kPortableNr};
  }
}

// ---- PackedB ----

void PackedB::Free::operator()(float* p) const { std::free(p); }

PackedB::PackedB(const float* b, int K, int N, bool trans_b, Isa isa) : K_(K), N_(N), isa_(isa) {
  if (K < 0 || N < 0) throw std::invalid_argument("PackedB: K and N must be >= 0");
  check_isa(isa);
  nr_ = gemm_tile(isa).nr;
  size_ = packed_b_floats(K, N, nr_);
  const size_t bytes = std::max<size_t>(64, (size_ * sizeof(float) + 63) / 64 * 64);
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) throw std::bad_alloc();
  data_.reset(p);
  pack_b(b, trans_b ? K : N, K, N, trans_b, nr_, p);
}

// ---- public entry points ----

void sgemm_packed(int M, int N, int K, const float* A, int lda, const PackedB& B, float* C, int ldc,
                  const Epilogue& ep, ThreadPool* pool) {
  gemm_driver(M, N, K, A, lda, B.data(), B.isa(), C, ldc, ep, pool);
}

void sgemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, bool trans_b,
           float* C, int ldc, const Epilogue& ep, ThreadPool* pool, Isa isa) {
  check_isa(isa);
  const int nr = gemm_tile(isa).nr;
  thread_local std::vector<float> scratch;
  const size_t need = packed_b_floats(K, N, nr) + 16;
  if (scratch.size() < need) scratch.resize(need);
  // Align the packed panels to 64 bytes inside the scratch vector.
  float* bp = scratch.data();
  bp += (64 - reinterpret_cast<uintptr_t>(bp) % 64) % 64 / sizeof(float);
  pack_b(B, ldb, K, N, trans_b, nr, bp);
  gemm_driver(M, N, K, A, lda, bp, isa, C, ldc, ep, pool);
}

void sgemm_batched(int batch, int M, int N, int K, const float* A, const int64_t* a_offsets, int lda,
                   const float* B, const int64_t* b_offsets, int ldb, bool trans_b, float* C, int ldc,
                   const Epilogue& ep, ThreadPool* pool, Isa isa) {
  if (ep.residual) throw std::invalid_argument("sgemm_batched: a residual is not supported");
  check_isa(isa);
  const int threads = pool ? pool->num_threads() : 1;
  auto one = [&](size_t i, ThreadPool* p) {
    sgemm(M, N, K, A + a_offsets[i], lda, B + b_offsets[i], ldb, trans_b, C + i * size_t(M) * ldc, ldc, ep, p, isa);
  };
  // Whole products per thread when each thread gets at least two (attention: batch x heads
  // small GEMMs); otherwise every product uses the whole pool.
  if (threads > 1 && batch >= 2 * threads) {
    pool->parallel_for(size_t(batch), [&](size_t i) { one(i, nullptr); });
  } else {
    for (int i = 0; i < batch; ++i) one(size_t(i), pool);
  }
}

}  // namespace si
