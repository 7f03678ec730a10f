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

// SW: stride_w when it is 1 or 2 (0: any, read at run time). With SW known, every input address
// of the tile is a compile-time offset from one base register (a runtime stride made GCC keep
// the P*CI offsets on the stack).
template <int FB, int P, bool NCHW, int SW>
void direct_tile(const ConvJob& j, const CRange& cr, const float* in_n, const float* wg, int ih0, int iw0, int r0,
                 int r1, int s0, int s1, float* out, const float* res, size_t kstride, int kb0,
                 const ptrdiff_t* pofs) {
  using T = typename V::T;
  constexpr int B = V::B;
  constexpr int CI = NCHW ? 1 : B;  // input lanes per channel step
  constexpr int CS = NCHW ? 1 : B;  // floats between adjacent input columns
  const int W = j.p.W, S = j.p.S, dh = j.p.dil_h, dw = j.p.dil_w;
  const size_t pstride = SW ? size_t(SW) * CS : size_t(j.p.stride_w) * CS;
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
      for (int p = 0; p < P; ++p)
        acc[f][p] = !pofs ? V::load(out + f * kstride + p * B)
                          : pofs[p] >= 0 ? V::load(out + f * kstride + pofs[p]) : V::zero();
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
#pragma GCC unroll 2
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
      for (int p = 0; p < P; ++p) {
        if (!pofs) {
          V::store(out + f * kstride + p * B, acc[f][p]);
        } else if (pofs[p] >= 0) {
          V::store(out + f * kstride + pofs[p], acc[f][p]);
        }
      }
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
    for (int p = 0; p < P; ++p) {
      const ptrdiff_t po = pofs ? pofs[p] : p * B;
      if (po >= 0) V::store(o + po, epilogue(j, acc[f][p], bv, rr ? rr + po : nullptr, valid));
    }
  }
}

// One register tile of P pixels at output column offset `at` (floats into a channel block's
// plane) for every filter group in [g0, g1): the tile's input stays in L1 while the groups'
// weights stream from L2, as a GEMM reuses its packed A across B panels.
template <int P, bool NCHW, int SW>
void tile_groups(const ConvJob& j, const CRange& cr, const float* in_n, int g0, int g1, int ih0, int iw0, int r0,
                 int r1, int s0, int s1, float* out_n, const float* res_n, size_t at,
                 const ptrdiff_t* pofs = nullptr) {
  constexpr int B = V::B;
  const size_t kstride = size_t(j.OH) * j.OW * B;
  const size_t w_block = size_t(NCHW ? j.p.C : j.Cb) * j.p.R * j.p.S * (NCHW ? 1 : B) * B;
  for (int g = g0; g < g1; ++g) {
    int kb0, fb;
    conv_fb_group(j.Kb, j.max_fb, g, kb0, fb);
    const float* wg = j.w + kb0 * w_block;
    float* o = out_n + kb0 * kstride + at;
    const float* rr = res_n ? res_n + kb0 * kstride + at : nullptr;
    switch (fb) {
      case 1: direct_tile<1, P, NCHW, SW>(j, cr, in_n, wg, ih0, iw0, r0, r1, s0, s1, o, rr, kstride, kb0, pofs); break;
      case 2: if constexpr (V::kMaxFB >= 2) direct_tile<2, P, NCHW, SW>(j, cr, in_n, wg, ih0, iw0, r0, r1, s0, s1, o, rr, kstride, kb0, pofs);
        break;
      case 3: if constexpr (V::kMaxFB >= 3) direct_tile<3, P, NCHW, SW>(j, cr, in_n, wg, ih0, iw0, r0, r1, s0, s1, o, rr, kstride, kb0, pofs);
        break;
      case 4: if constexpr (V::kMaxFB >= 4) direct_tile<4, P, NCHW, SW>(j, cr, in_n, wg, ih0, iw0, r0, r1, s0, s1, o, rr, kstride, kb0, pofs);
        break;
    }
  }
}

template <int P, bool NCHW, int SW>
void tail_groups(int rem, const ConvJob& j, const CRange& cr, const float* in_n, int g0, int g1, int ih0, int iw0,
                 int r0, int r1, float* out_n, const float* res_n, size_t at, const ptrdiff_t* pofs = nullptr) {
  if constexpr (P >= 1) {
    if (rem == P) {
      tile_groups<P, NCHW, SW>(j, cr, in_n, g0, g1, ih0, iw0, r0, r1, 0, j.p.S, out_n, res_n, at, pofs);
    } else {
      tail_groups<P - 1, NCHW, SW>(rem, j, cr, in_n, g0, g1, ih0, iw0, r0, r1, out_n, res_n, at, pofs);
    }
  }
}

// A tile of n <= P pixels at (oh, ow) whose window leaves the input (a padded edge): its input
// is first copied, zero-filled where it lies outside, into a small per-thread buffer, and the
// tile then runs all its taps as an interior one. Computed one pixel at a time instead, with
// clipped taps, an edge pixel keeps only FB accumulators busy and runs at an eighth of the
// speed; that cost 15-25% on 56x56 and 224x224 maps and 30% on the 7x7 stride-2 first layer.
template <bool NCHW, int SW>
void edge_tile(int n, const ConvJob& j, const CRange& cr, const float* in_n, int g0, int g1, float* out_n,
               const float* res_n, int oh, int ow, size_t at) {
  constexpr int B = V::B, P = NCHW ? V::kMaxPnchw : V::kMaxP;
  constexpr int CS = NCHW ? 1 : B;
  const ConvParams& p = j.p;
  const int tw = (n - 1) * p.stride_w + (p.S - 1) * p.dil_w + 1;
  const int ih0 = oh * p.stride_h - p.pad_top, iw0 = ow * p.stride_w - p.pad_left;
  const size_t row = size_t(tw) * CS, plane = size_t(p.R) * row, in_plane = size_t(p.H) * p.W * CS;
  // Indexed like the input (channel c at c * plane), so the chunk's channels keep their offsets.
  thread_local std::vector<float> buf;
  if (buf.size() < size_t(cr.c1) * plane) buf.resize(size_t(cr.c1) * plane);
  const int x0 = imax(0, -iw0), x1 = imax(x0, imin(tw, p.W - iw0));  // copied columns [x0, x1)
  for (int c = cr.c0; c < cr.c1; ++c)
    for (int r = 0; r < p.R; ++r) {
      float* d = buf.data() + c * plane + r * row;
      const int ih = ih0 + r * p.dil_h;
      if (ih < 0 || ih >= p.H || x0 >= x1) {
        std::fill(d, d + row, 0.f);
        continue;
      }
      std::fill(d, d + size_t(x0) * CS, 0.f);
      const float* s = in_n + c * in_plane + (size_t(ih) * p.W + iw0 + x0) * CS;
      std::copy(s, s + size_t(x1 - x0) * CS, d + size_t(x0) * CS);
      std::fill(d + size_t(x1) * CS, d + row, 0.f);
    }
  ConvJob jl = j;  // the buffer as the input: R rows of tw columns, rows already dilated
  jl.p.H = p.R;
  jl.p.W = tw;
  jl.p.dil_h = 1;
  tail_groups<P, NCHW, SW>(n, jl, cr, buf.data(), g0, g1, 0, 0, 0, p.R, out_n, res_n, at);
}

// One output row segment [ow_b, ow_e) for the filter groups [g0, g1); out_n/res_n: the image.
// The segment is cut into tiles of near-equal width (56 = 6x6 + 4x5, not 9x6 + 2): a narrow
// tail tile keeps too few accumulators busy to cover the FMA latency.
template <bool NCHW, int SW>
void direct_row(const ConvJob& j, const CRange& cr, const float* in_n, int g0, int g1, float* out_n,
                const float* res_n, int oh, int ow_b, int ow_e) {
  constexpr int B = V::B, P = NCHW ? V::kMaxPnchw : V::kMaxP;
  const ConvParams& p = j.p;
  const int ih0 = oh * p.stride_h - p.pad_top;
  int r0, r1;
  tap_range(ih0, p.dil_h, p.R, p.H, r0, r1);
  const int lo = (p.pad_left + p.stride_w - 1) / p.stride_w;
  const int num = p.W - 1 + p.pad_left - (p.S - 1) * p.dil_w;
  const int hi = num < 0 ? 0 : num / p.stride_w + 1;  // columns [lo, hi) have every tap inside
  const int len = ow_e - ow_b;
  if (len <= 0) return;
  const int nt = (len + P - 1) / P, base = len / nt, extra = len % nt;
  int ow = ow_b;
  for (int t = 0; t < nt; ++t) {
    const int n = base + (t < extra ? 1 : 0);
    const size_t at = (size_t(oh) * j.OW + ow) * B;
    if (ow >= lo && ow + n <= hi) {
      tail_groups<P, NCHW, SW>(n, j, cr, in_n, g0, g1, ih0, ow * p.stride_w - p.pad_left, r0, r1, out_n, res_n, at);
    } else {
      edge_tile<NCHW, SW>(n, j, cr, in_n, g0, g1, out_n, res_n, oh, ow, at);
    }
    ow += n;
  }
}

// Flat mode (j.flat_wp > 0): the input is a zero-padded copy, Wp = flat_wp columns wide, and
// the outputs are walked as one row of (OH - 1) * Wp + OW positions q, output (q / Wp, q % Wp):
// every tap of every tile is in bounds, so small maps run in full register tiles instead of
// one pixel at a time at their edges. Positions with q % Wp >= OW are computed and dropped.
void flat_row(const ConvJob& j, const CRange& cr, const float* in_n, int g0, int g1, float* out_n, const float* res_n,
              int q_b, int q_e) {
  constexpr int B = V::B, P = V::kMaxP;
  const int Wp = j.flat_wp, OW = j.OW;
  ptrdiff_t pofs[P];
  auto offsets = [&](int q, int n) {
    for (int p = 0; p < n; ++p) {
      const int oh = (q + p) / Wp, ow = (q + p) % Wp;
      pofs[p] = ow < OW ? (ptrdiff_t(oh) * OW + ow) * B : -1;
    }
  };
  int q = q_b;
  for (; q + P <= q_e; q += P) {
    offsets(q, P);
    tile_groups<P, false, 1>(j, cr, in_n, g0, g1, 0, q, 0, j.p.R, 0, j.p.S, out_n, res_n, 0, pofs);
  }
  if (q < q_e) {
    offsets(q, q_e - q);
    tail_groups<P - 1, false, 1>(q_e - q, j, cr, in_n, g0, g1, 0, q, 0, j.p.R, out_n, res_n, 0, pofs);
  }
}

// Work split and cache blocking. A task is (image, block of filter groups, block of output rows,
// column chunk). Splitting the pixels makes every task stream the groups' weights again;
// splitting the groups makes every task read the input again: the split with the least such
// traffic that still gives every thread several tasks wins (one task when single-threaded).
// Inside a task, as in a GEMM: input channels in chunks whose input for one register tile stays
// in L1 (kTileInputBytes), then filter groups in blocks whose weights for the chunk stay in L2
// (kWeightBlockBytes), then the pixel tiles, each applied to every group of the block. The
// output tile holds the partial sums between chunks.
constexpr size_t kWeightBlockBytes = 256 * 1024;
constexpr size_t kTileInputBytes = 6 * 1024;
constexpr size_t kTasksPerThread = 4;

template <bool NCHW>
void direct_run(const ConvJob& j, const float* in, float* out, const float* res, ThreadPool* pool) {
  constexpr int B = V::B, P = NCHW ? V::kMaxPnchw : V::kMaxP;
  const ConvParams& p = j.p;
  const int G = conv_num_fb_groups(j.Kb, j.max_fb);
  const int CI = NCHW ? 1 : B;
  const int nc = NCHW ? p.C : j.Cb;
  const size_t in_img = size_t(nc) * p.H * p.W * CI;
  const size_t out_img = size_t(j.Kb) * j.OH * j.OW * B;
  const size_t w_cgroup = size_t(j.max_fb) * p.R * p.S * CI * B * sizeof(float);  // per c, one group

  const bool flat = j.flat_wp > 0;
  const int OHv = flat ? 1 : j.OH, OWv = flat ? (j.OH - 1) * j.flat_wp + j.OW : j.OW;  // positions walked
  const int threads = pool ? pool->num_threads() : 1;
  const size_t want = threads > 1 ? kTasksPerThread * size_t(threads) : 1;
  // Candidate pixel splits: halve the rows, then the columns (in whole register tiles).
  struct PixSplit {
    int rows, cols;
    size_t n;
  };
  std::vector<PixSplit> pix;
  {
    int rows = OHv, cols = OWv;
    for (;;) {
      const size_t n = size_t(p.N) * ((OHv + rows - 1) / rows) * ((OWv + cols - 1) / cols);
      pix.push_back({rows, cols, n});
      if (n >= want) break;
      if (rows > 1) {
        rows = (rows + 1) / 2;
      } else if (cols > 2 * P) {
        cols = ((cols + 1) / 2 + P - 1) / P * P;
      } else {
        break;
      }
    }
  }
  const double w_total = double(w_cgroup) * nc * G, in_total = double(in_img) * sizeof(float) * p.N;
  PixSplit best = pix.back();
  int best_gs = 1;
  double best_cost = -1;
  for (const PixSplit& ps : pix) {
    for (int gs = 1;; gs = imin(G, gs * 2)) {
      const size_t n = ps.n * size_t(gs);
      const bool enough = n >= want || (gs == G && &ps == &pix.back());
      if (enough) {
        const double cost = double(ps.n) * w_total + double(gs) * in_total;
        if (best_cost < 0 || cost < best_cost) {
          best_cost = cost;
          best = ps;
          best_gs = gs;
        }
        break;
      }
      if (gs == G) break;
    }
  }
  const int gper = (G + best_gs - 1) / best_gs;  // groups per task
  const int ngb = (G + gper - 1) / gper;
  const int rows = best.rows, cols = best.cols;
  const int nrb = (OHv + rows - 1) / rows, ncc = (OWv + cols - 1) / cols;
  const size_t tile_in = size_t(p.R) * ((P - 1) * p.stride_w + (p.S - 1) * p.dil_w + 1) * CI * sizeof(float);
  const int cchunk = imax(1, imin(nc, int(kTileInputBytes / tile_in)));
  const int gblock = imax(1, int(kWeightBlockBytes / (w_cgroup * cchunk)));
  const size_t ntasks = size_t(p.N) * ngb * nrb * ncc;
  run_parallel(pool, ntasks, [&](size_t t) {
    const int ck = int(t % ncc);
    t /= ncc;
    const int rb = int(t % nrb);
    t /= nrb;
    const int gb = int(t % ngb), n = int(t / ngb);
    const int g0 = gb * gper, g1 = imin(G, g0 + gper);
    const int oh1 = imin(OHv, (rb + 1) * rows), ow0 = ck * cols, ow1 = imin(OWv, ow0 + cols);
    float* out_n = out + n * out_img;
    const float* res_n = res ? res + n * out_img : nullptr;
    for (int c0 = 0; c0 < nc; c0 += cchunk) {
      const CRange cr{c0, imin(nc, c0 + cchunk), c0 == 0, c0 + cchunk >= nc};
      for (int gg = g0; gg < g1; gg += gblock)
        for (int oh = rb * rows; oh < oh1; ++oh) {
          const int ge = imin(g1, gg + gblock);
          if constexpr (!NCHW) {
            if (flat) {
              flat_row(j, cr, in + n * in_img, gg, ge, out_n, res_n, ow0, ow1);
              continue;
            }
          }
          if (p.stride_w == 1) {
            direct_row<NCHW, 1>(j, cr, in + n * in_img, gg, ge, out_n, res_n, oh, ow0, ow1);
          } else if (p.stride_w == 2) {
            direct_row<NCHW, 2>(j, cr, in + n * in_img, gg, ge, out_n, res_n, oh, ow0, ow1);
          } else {
            direct_row<NCHW, 0>(j, cr, in + n * in_img, gg, ge, out_n, res_n, oh, ow0, ow1);
          }
        }
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
  // Tasks of whole row blocks: one row of a small map is too little work to be worth a task.
  const int threads = pool ? pool->num_threads() : 1;
  const size_t planes = size_t(p.N) * j.Cb;
  const int nrb = threads > 1 ? imin(j.OH, imax(1, int((kTasksPerThread * threads + planes - 1) / planes))) : 1;
  const int rows = (j.OH + nrb - 1) / nrb;
  run_parallel(pool, planes * nrb, [&](size_t t) {
    const int rb = int(t % nrb);
    t /= nrb;
    const int cb = int(t % j.Cb), n = int(t / j.Cb);
    for (int oh = rb * rows; oh < imin(j.OH, (rb + 1) * rows); ++oh) {
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
    }
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
