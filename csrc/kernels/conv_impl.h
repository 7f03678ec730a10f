// The vectorised conv kernels, written once and instantiated per ISA. Include it (after conv.h
// and the ISA's intrinsics) inside namespace si::<isa>, after defining `struct V`:
//   using T; static constexpr int B (= nchwc_block), kMaxFB, kMaxP, kMaxPdw;
//   zero(), load(p), store(p, v), bcast(p), fma(a, b, c) = a*b+c, add(a, b),
//   act(v, Activation, alpha, beta), mask(v, n) (lanes >= n set to 0).
// No #include here on purpose: everything lands in the ISA's namespace.
//
// Direct conv (also 1x1 and the first layer): a tile of FB output-channel blocks x P output
// pixels of one row lives in FB*P vector accumulators; for every input channel (block), kernel
// row and column, FB weight vectors are loaded and one input value per pixel is broadcast.
// Packed weights of a group of FB blocks: [c][r][s][ci][f][B] (ci: B lanes for NCHWc input,
// 1 for NCHW input), so the inner loop reads one stream. Columns whose window leaves the
// input are computed one pixel at a time with a clipped tap range; rows clip their tap range.

namespace {

inline int imin(int a, int b) { return a < b ? a : b; }
inline int imax(int a, int b) { return a > b ? a : b; }

// Taps t in [t0, t1) of n with 0 <= base + t*d < lim.
inline void tap_range(int base, int d, int n, int lim, int& t0, int& t1) {
  t0 = base >= 0 ? 0 : (-base + d - 1) / d;
  const int last = lim - 1 - base;
  t1 = last < 0 ? 0 : imin(n, last / d + 1);
  if (t1 < t0) t1 = t0;
}

template <class F>
void run_parallel(ThreadPool* pool, size_t n, const F& f) {
  if (pool && pool->num_threads() > 1 && n > 1) {
    pool->parallel_for(n, f);
  } else {
    for (size_t i = 0; i < n; ++i) f(i);
  }
}

template <class Tv>
inline Tv epilogue(const ConvJob& j, Tv v, Tv bias, const float* res, int valid) {
  v = V::add(v, bias);
  if (res) v = V::add(v, V::load(res));
  v = V::act(v, j.act, j.alpha, j.beta);
  if (valid < V::B) v = V::mask(v, valid);
  return v;
}

// in_n: the image (NCHWc: [Cb][H][W][B]; NCHW: [C][H][W]); wg: the group's packed weights;
// out/res: at (kb0, oh, ow) in NCHWc, consecutive blocks kstride floats apart.
// Input channels (blocks) [cr.c0, cr.c1) only: the first range starts the accumulators at 0, later
// ones continue from the partial sums stored in `out`; the last one applies the epilogue.
struct CRange {
  int c0, c1;
  bool first, last;
};

template <int FB, int P, bool NCHW>
void direct_tile(const ConvJob& j, const CRange& cr, const float* in_n, const float* wg, int ih0, int iw0, int r0,
                 int r1, int s0, int s1, float* out, const float* res, size_t kstride, int kb0) {
  using T = typename V::T;
  constexpr int B = V::B;
  constexpr int CI = NCHW ? 1 : B;  // input lanes per channel step
  constexpr int CS = NCHW ? 1 : B;  // floats between adjacent input columns
  const int W = j.p.W, S = j.p.S, dh = j.p.dil_h, dw = j.p.dil_w;
  const size_t pstride = size_t(j.p.stride_w) * CS;
  const size_t in_cstride = size_t(j.p.H) * W * CS;
  const size_t w_sstride = size_t(CI) * FB * B;
  const size_t w_cstride = size_t(j.p.R) * S * w_sstride;
  T acc[FB][P];
  if (cr.first) {
#pragma GCC unroll 4
    for (int f = 0; f < FB; ++f)
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[f][p] = V::zero();
  } else {
#pragma GCC unroll 4
    for (int f = 0; f < FB; ++f)
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[f][p] = V::load(out + f * kstride + p * B);
  }
  for (int c = cr.c0; c < cr.c1; ++c) {
    const float* in_c = in_n + c * in_cstride;
    const float* w_c = wg + c * w_cstride;
    for (int r = r0; r < r1; ++r) {
      const float* in_r = in_c + size_t(ih0 + r * dh) * W * CS;
      const float* w_r = w_c + size_t(r) * S * w_sstride;
      for (int s = s0; s < s1; ++s) {
        const float* ip = in_r + ptrdiff_t(iw0 + s * dw) * CS;
        const float* wp = w_r + s * w_sstride;
        // Opaque to the optimiser: otherwise GCC turns each of the P*CI input addresses into its
        // own induction variable across the c/r/s loops and spills them all to the stack.
        asm("" : "+r"(ip), "+r"(wp));
#pragma GCC unroll 16
        for (int ci = 0; ci < CI; ++ci) {
          T wv[FB];
#pragma GCC unroll 4
          for (int f = 0; f < FB; ++f) wv[f] = V::load(wp + (ci * FB + f) * B);
#pragma GCC unroll 8
          for (int p = 0; p < P; ++p) {
            const T b = V::bcast(ip + p * pstride + ci);
#pragma GCC unroll 4
            for (int f = 0; f < FB; ++f) acc[f][p] = V::fma(wv[f], b, acc[f][p]);
          }
        }
      }
    }
  }
  if (!cr.last) {
#pragma GCC unroll 4
    for (int f = 0; f < FB; ++f)
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) V::store(out + f * kstride + p * B, acc[f][p]);
    return;
  }
#pragma GCC unroll 4
  for (int f = 0; f < FB; ++f) {
    const int kb = kb0 + f;
    const T bv = V::load(j.bias + kb * B);
    const int valid = j.p.K - kb * B;
    float* o = out + f * kstride;
    const float* rr = res ? res + f * kstride : nullptr;
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) V::store(o + p * B, epilogue(j, acc[f][p], bv, rr ? rr + p * B : nullptr, valid));
  }
}

template <int FB, int P, bool NCHW>
void direct_tail(int rem, const ConvJob& j, const CRange& cr, const float* in_n, const float* wg, int ih0, int iw0, int r0,
                 int r1, float* out, const float* res, size_t kstride, int kb0) {
  if constexpr (P >= 1) {
    if (rem == P) {
      direct_tile<FB, P, NCHW>(j, cr, in_n, wg, ih0, iw0, r0, r1, 0, j.p.S, out, res, kstride, kb0);
    } else {
      direct_tail<FB, P - 1, NCHW>(rem, j, cr, in_n, wg, ih0, iw0, r0, r1, out, res, kstride, kb0);
    }
  }
}

// One output row segment [ow_b, ow_e) of FB channel blocks starting at kb0.
template <int FB, bool NCHW>
void direct_row(const ConvJob& j, const CRange& cr, const float* in_n, const float* wg, int kb0, float* out_k,
                const float* res_k, int oh, int ow_b, int ow_e) {
  constexpr int B = V::B, P = V::kMaxP;
  const ConvParams& p = j.p;
  const int ih0 = oh * p.stride_h - p.pad_top;
  int r0, r1;
  tap_range(ih0, p.dil_h, p.R, p.H, r0, r1);
  const int lo = (p.pad_left + p.stride_w - 1) / p.stride_w;
  const int num = p.W - 1 + p.pad_left - (p.S - 1) * p.dil_w;
  const int hi = num < 0 ? 0 : num / p.stride_w + 1;
  const int a = imin(imax(lo, ow_b), ow_e), b = imin(imax(hi, a), ow_e);
  const size_t kstride = size_t(j.OH) * j.OW * B;
  auto at = [&](int ow) { return (size_t(oh) * j.OW + ow) * B; };
  auto single = [&](int ow) {
    const int iw0 = ow * p.stride_w - p.pad_left;
    int s0, s1;
    tap_range(iw0, p.dil_w, p.S, p.W, s0, s1);
    direct_tile<FB, 1, NCHW>(j, cr, in_n, wg, ih0, iw0, r0, r1, s0, s1, out_k + at(ow),
                             res_k ? res_k + at(ow) : nullptr, kstride, kb0);
  };
  for (int ow = ow_b; ow < a; ++ow) single(ow);
  int ow = a;
  for (; ow + P <= b; ow += P)
    direct_tile<FB, P, NCHW>(j, cr, in_n, wg, ih0, ow * p.stride_w - p.pad_left, r0, r1, 0, p.S, out_k + at(ow),
                             res_k ? res_k + at(ow) : nullptr, kstride, kb0);
  if (ow < b)
    direct_tail<FB, P - 1, NCHW>(b - ow, j, cr, in_n, wg, ih0, ow * p.stride_w - p.pad_left, r0, r1, out_k + at(ow),
                                 res_k ? res_k + at(ow) : nullptr, kstride, kb0);
  for (int ow2 = b; ow2 < ow_e; ++ow2) single(ow2);
}

template <bool NCHW>
void direct_row_fb(int fb, const ConvJob& j, const CRange& cr, const float* in_n, const float* wg, int kb0, float* out_k,
                   const float* res_k, int oh, int ow_b, int ow_e) {
  switch (fb) {
    case 1: return direct_row<1, NCHW>(j, cr, in_n, wg, kb0, out_k, res_k, oh, ow_b, ow_e);
    case 2: if constexpr (V::kMaxFB >= 2) return direct_row<2, NCHW>(j, cr, in_n, wg, kb0, out_k, res_k, oh, ow_b, ow_e);
      break;
    case 3: if constexpr (V::kMaxFB >= 3) return direct_row<3, NCHW>(j, cr, in_n, wg, kb0, out_k, res_k, oh, ow_b, ow_e);
      break;
    case 4: if constexpr (V::kMaxFB >= 4) return direct_row<4, NCHW>(j, cr, in_n, wg, kb0, out_k, res_k, oh, ow_b, ow_e);
      break;
  }
}

// Work split: tasks of (image, filter group, block of output rows, column chunk), enough of
// them to keep every thread busy at batch 1, each as large as possible so that the group's weights
// are reused across many pixel tiles. Inside a task the input channels are walked in chunks whose
// packed weights fit in L2 (kWeightChunkBytes); the output tile holds the partial sums between
// chunks.
constexpr size_t kWeightChunkBytes = 192 * 1024;
constexpr size_t kMinTasks = 16;

template <bool NCHW>
void direct_run(const ConvJob& j, const float* in, float* out, const float* res, ThreadPool* pool) {
  constexpr int B = V::B, P = V::kMaxP;
  const int G = conv_num_fb_groups(j.Kb, j.max_fb);
  const int CI = NCHW ? 1 : B;
  const int nc = NCHW ? j.p.C : j.Cb;
  const size_t in_img = size_t(nc) * j.p.H * j.p.W * CI;
  const size_t out_img = size_t(j.Kb) * j.OH * j.OW * B;
  const size_t w_block = size_t(nc) * j.p.R * j.p.S * CI * B;  // packed floats per output block
  const size_t w_cbytes = size_t(j.max_fb) * j.p.R * j.p.S * CI * B * sizeof(float);  // per c, whole group
  const int cchunk = imax(1, imin(nc, int(kWeightChunkBytes / w_cbytes)));
  int rows = j.OH, cols = j.OW;
  auto ntasks = [&] { return size_t(j.p.N) * G * ((j.OH + rows - 1) / rows) * ((j.OW + cols - 1) / cols); };
  while (ntasks() < kMinTasks) {
    if (rows > 1) {
      rows = (rows + 1) / 2;
    } else if (cols > 2 * P) {
      cols = ((cols + 1) / 2 + P - 1) / P * P;
    } else {
      break;
    }
  }
  const int nrb = (j.OH + rows - 1) / rows, ncc = (j.OW + cols - 1) / cols;
  run_parallel(pool, ntasks(), [&](size_t t) {
    const int ck = int(t % ncc);
    t /= ncc;
    const int rb = int(t % nrb);
    t /= nrb;
    const int g = int(t % G), n = int(t / G);
    int kb0, fb;
    conv_fb_group(j.Kb, j.max_fb, g, kb0, fb);
    const size_t ko = n * out_img + size_t(kb0) * j.OH * j.OW * B;
    const float* wg = j.w + kb0 * w_block;
    const int oh1 = imin(j.OH, (rb + 1) * rows), ow0 = ck * cols, ow1 = imin(j.OW, ow0 + cols);
    for (int c0 = 0; c0 < nc; c0 += cchunk) {
      const CRange cr{c0, imin(nc, c0 + cchunk), c0 == 0, c0 + cchunk >= nc};
      for (int oh = rb * rows; oh < oh1; ++oh)
        direct_row_fb<NCHW>(fb, j, cr, in + n * in_img, wg, kb0, out + ko, res ? res + ko : nullptr, oh, ow0, ow1);
    }
  });
}

// Depthwise (groups == C == K): per channel block, P output pixels of a row in P accumulators;
// packed weights [Cb][R][S][B].
template <int P>
void dw_tile(const ConvJob& j, const float* in_c, const float* w_c, int ih0, int iw0, int r0, int r1, int s0,
             int s1, float* out, const float* res, int cb) {
  using T = typename V::T;
  constexpr int B = V::B;
  const int W = j.p.W, S = j.p.S, dh = j.p.dil_h, dw = j.p.dil_w;
  const size_t pstride = size_t(j.p.stride_w) * B;
  T acc[P];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) acc[p] = V::zero();
  for (int r = r0; r < r1; ++r) {
    const float* in_r = in_c + size_t(ih0 + r * dh) * W * B;
    for (int s = s0; s < s1; ++s) {
      const T wv = V::load(w_c + (r * S + s) * B);
      const float* ip = in_r + ptrdiff_t(iw0 + s * dw) * B;
      asm("" : "+r"(ip));
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[p] = V::fma(V::load(ip + p * pstride), wv, acc[p]);
    }
  }
  const T bv = V::load(j.bias + cb * B);
  const int valid = j.p.K - cb * B;
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) V::store(out + p * B, epilogue(j, acc[p], bv, res ? res + p * B : nullptr, valid));
}

template <int P>
void dw_tail(int rem, const ConvJob& j, const float* in_c, const float* w_c, int ih0, int iw0, int r0, int r1,
             float* out, const float* res, int cb) {
  if constexpr (P >= 1) {
    if (rem == P) {
      dw_tile<P>(j, in_c, w_c, ih0, iw0, r0, r1, 0, j.p.S, out, res, cb);
    } else {
      dw_tail<P - 1>(rem, j, in_c, w_c, ih0, iw0, r0, r1, out, res, cb);
    }
  }
}

void dw_run(const ConvJob& j, const float* in, float* out, const float* res, ThreadPool* pool) {
  constexpr int B = V::B, P = V::kMaxPdw;
  const ConvParams& p = j.p;
  const size_t in_plane = size_t(p.H) * p.W * B, out_plane = size_t(j.OH) * j.OW * B;
  const int lo = (p.pad_left + p.stride_w - 1) / p.stride_w;
  const int num = p.W - 1 + p.pad_left - (p.S - 1) * p.dil_w;
  const int hi = num < 0 ? 0 : num / p.stride_w + 1;
  const int a = imin(lo, j.OW), b = imin(imax(hi, a), j.OW);
  run_parallel(pool, size_t(p.N) * j.Cb * j.OH, [&](size_t t) {
    const int oh = int(t % j.OH);
    t /= j.OH;
    const int cb = int(t % j.Cb), n = int(t / j.Cb);
    const float* in_c = in + (size_t(n) * j.Cb + cb) * in_plane;
    const float* w_c = j.w + size_t(cb) * p.R * p.S * B;
    const size_t oo = (size_t(n) * j.Kb + cb) * out_plane + size_t(oh) * j.OW * B;
    float* o = out + oo;
    const float* rr = res ? res + oo : nullptr;
    const int ih0 = oh * p.stride_h - p.pad_top;
    int r0, r1;
    tap_range(ih0, p.dil_h, p.R, p.H, r0, r1);
    auto single = [&](int ow) {
      const int iw0 = ow * p.stride_w - p.pad_left;
      int s0, s1;
      tap_range(iw0, p.dil_w, p.S, p.W, s0, s1);
      dw_tile<1>(j, in_c, w_c, ih0, iw0, r0, r1, s0, s1, o + ow * B, rr ? rr + ow * B : nullptr, cb);
    };
    for (int ow = 0; ow < a; ++ow) single(ow);
    int ow = a;
    for (; ow + P <= b; ow += P)
      dw_tile<P>(j, in_c, w_c, ih0, ow * p.stride_w - p.pad_left, r0, r1, 0, p.S, o + ow * B,
                 rr ? rr + ow * B : nullptr, cb);
    if (ow < b)
      dw_tail<P - 1>(b - ow, j, in_c, w_c, ih0, ow * p.stride_w - p.pad_left, r0, r1, o + ow * B,
                     rr ? rr + ow * B : nullptr, cb);
    for (int ow2 = b; ow2 < j.OW; ++ow2) single(ow2);
  });
}

}  // namespace

void conv_direct(const ConvJob& j, const float* in, float* out, const float* res, ThreadPool* pool) {
  if (j.kind == ConvKind::kFirstLayer) {
    direct_run<true>(j, in, out, res, pool);
  } else {
    direct_run<false>(j, in, out, res, pool);
  }
}

void conv_depthwise(const ConvJob& j, const float* in, float* out, const float* res, ThreadPool* pool) {
  dw_run(j, in, out, res, pool);
}
