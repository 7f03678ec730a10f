// Pooling kernels, written once with lane loops over a compile-time block the compiler
// vectorises with the including file's ISA flags. Include inside namespace si::<isa>; no
// #include here on purpose. Defines <isa>::pool_nchwc / global_avg_pool_nchwc for blocks 8, 16.

namespace {

inline void pool_tap_range(int base, int d, int n, int lim, int& t0, int& t1) {
  t0 = base >= 0 ? 0 : (-base + d - 1) / d;
  const int last = lim - 1 - base;
  t1 = last < 0 ? 0 : (n < last / d + 1 ? n : last / d + 1);
  if (t1 < t0) t1 = t0;
}

template <class F>
void pool_parallel(ThreadPool* pool, size_t n, const F& f) {
  if (pool && pool->num_threads() > 1 && n > 1) {
    pool->parallel_for(n, f);
  } else {
    for (size_t i = 0; i < n; ++i) f(i);
  }
}

template <int B, bool kMax>
void pool_impl(const PoolParams& p, const float* in, float* out, ThreadPool* tp) {
  const int Cb = (p.C + B - 1) / B;
  const size_t in_plane = size_t(p.H) * p.W * B, out_plane = size_t(p.OH) * p.OW * B;
  pool_parallel(tp, size_t(p.N) * Cb * p.OH, [&](size_t t) {
    const int oh = int(t % p.OH);
    const size_t nc = t / p.OH;
    const float* ic = in + nc * in_plane;
    float* o = out + nc * out_plane + size_t(oh) * p.OW * B;
    const int ih0 = oh * p.stride_h - p.pad_top;
    int r0, r1, pr0, pr1;
    pool_tap_range(ih0, p.dil_h, p.R, p.H, r0, r1);
    pool_tap_range(ih0 + p.pad_top, p.dil_h, p.R, p.H + p.pad_top + p.pad_bottom, pr0, pr1);
    for (int ow = 0; ow < p.OW; ++ow) {
      const int iw0 = ow * p.stride_w - p.pad_left;
      int s0, s1;
      pool_tap_range(iw0, p.dil_w, p.S, p.W, s0, s1);
      float acc[B];
      for (int l = 0; l < B; ++l) acc[l] = kMax ? -3.402823466e38f : 0.f;
      for (int r = r0; r < r1; ++r) {
        const float* row = ic + size_t(ih0 + r * p.dil_h) * p.W * B;
        for (int s = s0; s < s1; ++s) {
          const float* x = row + ptrdiff_t(iw0 + s * p.dil_w) * B;
          if constexpr (kMax) {
            for (int l = 0; l < B; ++l) acc[l] = acc[l] > x[l] ? acc[l] : x[l];
          } else {
            for (int l = 0; l < B; ++l) acc[l] += x[l];
          }
        }
      }
      float* y = o + size_t(ow) * B;
      const int taps = (r1 - r0) * (s1 - s0);
      if constexpr (kMax) {
        if (taps == 0)
          for (int l = 0; l < B; ++l) acc[l] = 0.f;
      } else {
        int cnt = taps;
        if (p.count_include_pad) {
          int ps0, ps1;
          pool_tap_range(iw0 + p.pad_left, p.dil_w, p.S, p.W + p.pad_left + p.pad_right, ps0, ps1);
          cnt = (pr1 - pr0) * (ps1 - ps0);
        }
        const float inv = cnt > 0 ? 1.f / float(cnt) : 0.f;
        for (int l = 0; l < B; ++l) acc[l] *= inv;
      }
      for (int l = 0; l < B; ++l) y[l] = acc[l];
    }
  });
}

template <int B>
void gap_impl(const float* in, float* out, int N, int C, int HW, ThreadPool* tp) {
  const int Cb = (C + B - 1) / B;
  pool_parallel(tp, size_t(N) * Cb, [&](size_t t) {
    const float* x = in + t * size_t(HW) * B;
    float acc[4][B] = {};
    int i = 0;
    for (; i + 4 <= HW; i += 4)
      for (int u = 0; u < 4; ++u)
        for (int l = 0; l < B; ++l) acc[u][l] += x[size_t(i + u) * B + l];
    for (; i < HW; ++i)
      for (int l = 0; l < B; ++l) acc[0][l] += x[size_t(i) * B + l];
    const float inv = 1.f / float(HW);
    for (int l = 0; l < B; ++l) out[t * B + l] = ((acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l])) * inv;
  });
}

}  // namespace

void pool_nchwc(const PoolParams& p, PoolKind kind, const float* in, float* out, int block, ThreadPool* tp) {
  if (block == 16) {
    kind == PoolKind::kMax ? pool_impl<16, true>(p, in, out, tp) : pool_impl<16, false>(p, in, out, tp);
  } else {
    kind == PoolKind::kMax ? pool_impl<8, true>(p, in, out, tp) : pool_impl<8, false>(p, in, out, tp);
  }
}

void global_avg_pool_nchwc(const float* in, float* out, int N, int C, int HW, int block, ThreadPool* tp) {
  if (block == 16) {
    gap_impl<16>(in, out, N, C, HW, tp);
  } else {
    gap_impl<8>(in, out, N, C, HW, tp);
  }
}
