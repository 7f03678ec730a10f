// Pooling kernels, written once with lane loops over a compile-time block the compiler
// vectorises with the including file's ISA flags. Include inside namespace si::<isa>; no
// #include here on purpose. Defines <isa>::pool_nchwc for blocks 1 (plain NCHW), 8, 16 and
// global_avg_pool_nchwc for blocks 8, 16.

namespace {

inline void pool_tap_range(int base, int d, int n, int lim, int& t0, int& t1) {
  t0 = base >= 0 ? 0 : (-base + d - 1) / d;
  const int last = lim - 1 - base;
  t1 = last < 0 ? 0 : (n < last / d + 1 ? n : last / d + 1);
  if (t1 < t0) t1 = t0;
}

// What a window's accumulator becomes the output by: for average pooling 1 / its tap count
// (count_include_pad: the taps inside the padded input); for max 1, or 0 for a window with no
// tap at all (its output is 0, not the -FLT_MAX it started from).
template <bool kMax>
inline float pool_window_scale(const PoolParams& p, int iw0, int taps, int pr0, int pr1) {
  if (kMax) return taps > 0 ? 1.f : 0.f;
  int cnt = taps;
  if (p.count_include_pad) {
    int ps0, ps1;
    pool_tap_range(iw0 + p.pad_left, p.dil_w, p.S, p.W + p.pad_left + p.pad_right, ps0, ps1);
    cnt = (pr1 - pr0) * (ps1 - ps0);
  }
  return cnt > 0 ? 1.f / float(cnt) : 0.f;
}

// B floats as one vector value, loaded and stored unaligned, aliasing the floats it is read from.
template <int B>
struct LanesOf;
template <>
struct LanesOf<8> {
  typedef float type __attribute__((vector_size(32), aligned(4), may_alias));
};
template <>
struct LanesOf<16> {
  typedef float type __attribute__((vector_size(64), aligned(4), may_alias));
};
template <int B>
using Lanes = typename LanesOf<B>::type;

template <class F>
void pool_parallel(ThreadPool* pool, size_t n, const F& f) {
  if (pool && pool->num_threads() > 1 && n > 1) {
    pool->parallel_for(n, f);
  } else {
    for (size_t i = 0; i < n; ++i) f(i);
  }
}

// The output rows [0, rows) of plain-layout pooling in ~256 tasks of consecutive rows (rows are
// short): f(r0, r1) per task.
template <class F>
void pool_row_ranges(ThreadPool* pool, size_t rows, const F& f) {
  const size_t per_task = rows < 256 ? 1 : rows / 256;
  pool_parallel(pool, (rows + per_task - 1) / per_task,
                [&](size_t t) { f(t * per_task, (t + 1) * per_task < rows ? (t + 1) * per_task : rows); });
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
      // The block's lanes as one vector value (GCC vector extension; the including file's ISA
      // flags pick the registers): the max as an element-wise select, which the compiler
      // would not make of a lane loop.
      Lanes<B> acc;
      for (int l = 0; l < B; ++l) acc[l] = kMax ? -3.402823466e38f : 0.f;
      for (int r = r0; r < r1; ++r) {
        const float* row = ic + size_t(ih0 + r * p.dil_h) * p.W * B;
        for (int s = s0; s < s1; ++s) {
          const Lanes<B> x = *reinterpret_cast<const Lanes<B>*>(row + ptrdiff_t(iw0 + s * p.dil_w) * B);
          if constexpr (kMax) {
            acc = acc > x ? acc : x;
          } else {
            acc += x;
          }
        }
      }
      const float scale = pool_window_scale<kMax>(p, iw0, (r1 - r0) * (s1 - s0), pr0, pr1);
      if constexpr (kMax) {
        if (scale == 0.f) acc = Lanes<B>{};  // a window with no tap is 0
      } else {
        acc *= scale;
      }
      *reinterpret_cast<Lanes<B>*>(o + size_t(ow) * B) = acc;
    }
  });
}

// Plain NCHW (block 1), one output row at a time in two passes: the window's input rows
// combined into one row buffer (contiguous, streams), then the taps along that buffer (in L1)
// over whole runs of output columns whose S taps all lie inside the row (a loop the compiler
// vectorises: the column stride is a template constant for the usual 1 and 2), the edge columns
// one by one. Only edge columns have a window of their own to scale by.
template <int SW, bool kMax>
void pool_row_interior(const float* row, float* y, int ow0, int ow1, int stride_w, int iw_base, int S, int dil_w,
                       float scale) {
  const int sw = SW > 0 ? SW : stride_w;
  const float* x0 = row + iw_base;
  for (int ow = ow0; ow < ow1; ++ow) y[ow] = x0[ptrdiff_t(ow) * sw];
  for (int s = 1; s < S; ++s) {
    const float* x = x0 + s * dil_w;
    for (int ow = ow0; ow < ow1; ++ow) {
      const float v = x[ptrdiff_t(ow) * sw];
      if constexpr (kMax) {
        y[ow] = y[ow] > v ? y[ow] : v;
      } else {
        y[ow] += v;
      }
    }
  }
  if (!kMax || scale != 1.f)
    for (int ow = ow0; ow < ow1; ++ow) y[ow] *= scale;
}

// 2x2 windows at stride 2 wholly inside the image (VGG's pools): each output row straight
// from its two input rows, the column pairs as stride-2 loads the compiler vectorises (one
// pass, no row buffer, no per-row window bookkeeping), the input rows kPoolPrefetchRows output
// rows ahead prefetched into L2. Measured on Zen 4, one core, 64 x 224 x 224 max pool: in L2
// 2.2x faster than the general path below; from memory 2.3x (the hardware prefetchers left
// those short row pairs to demand misses at half the bandwidth).
constexpr size_t kPoolPrefetchRows = 8;
template <bool kMax>
inline bool pool_plain_2x2s2(const PoolParams& p, const float* in, float* out, ThreadPool* tp) {
  if (p.R != 2 || p.S != 2 || p.stride_h != 2 || p.stride_w != 2 || p.dil_h != 1 || p.dil_w != 1 ||
      p.pad_top != 0 || p.pad_left != 0 || 2 * p.OH > p.H || 2 * p.OW > p.W)
    return false;
  const size_t rows = size_t(p.N) * p.C * p.OH;
  const int W = p.W, OW = p.OW;
  // The first of output row idx's two input rows (the second follows it).
  auto input_rows = [&](size_t idx) { return in + (idx / p.OH * p.H + 2 * (idx % p.OH)) * W; };
  pool_row_ranges(tp, rows, [&](size_t r0, size_t r1) {
    for (size_t idx = r0; idx < r1; ++idx) {
      const float* __restrict a = input_rows(idx);
      const float* __restrict b = a + W;
      float* __restrict y = out + idx * OW;
      if (idx + kPoolPrefetchRows < rows) {
        const char* pa = reinterpret_cast<const char*>(input_rows(idx + kPoolPrefetchRows));
        for (size_t o = 0; o < 2 * size_t(W) * sizeof(float); o += 64) __builtin_prefetch(pa + o, 0, 2);
      }
      for (int ow = 0; ow < OW; ++ow) {
        const float a0 = a[2 * ow], a1 = a[2 * ow + 1], b0 = b[2 * ow], b1 = b[2 * ow + 1];
        if constexpr (kMax) {
          const float c0 = a0 > b0 ? a0 : b0, c1 = a1 > b1 ? a1 : b1;  // the general path's order
          y[ow] = c0 > c1 ? c0 : c1;
        } else {
          y[ow] = ((a0 + b0) + (a1 + b1)) * 0.25f;  // the general path's order
        }
      }
    }
  });
  return true;
}

template <bool kMax>
void pool_plain_impl(const PoolParams& p, const float* in, float* out, ThreadPool* tp) {
  if (pool_plain_2x2s2<kMax>(p, in, out, tp)) return;
  const size_t in_plane = size_t(p.H) * p.W, out_plane = size_t(p.OH) * p.OW;
  // Columns ow whose taps iw0 + s * dil (iw0 = ow * stride - pad_left) are all in [0, W).
  int lo = p.pad_left > 0 ? (p.pad_left + p.stride_w - 1) / p.stride_w : 0;
  const int span = (p.S - 1) * p.dil_w;
  int hi = p.W - 1 - span + p.pad_left < 0 ? 0 : (p.W - 1 - span + p.pad_left) / p.stride_w + 1;
  hi = hi > p.OW ? p.OW : hi;
  lo = lo > hi ? hi : lo;
  const size_t rows = size_t(p.N) * p.C * p.OH;
  pool_row_ranges(tp, rows, [&](size_t r0, size_t r1) {
    std::vector<float> buffer(size_t(p.W));
    float* acc = buffer.data();
    for (size_t idx = r0; idx < r1; ++idx) {
      const int oh = int(idx % p.OH);
      const size_t nc = idx / p.OH;
      const float* ic = in + nc * in_plane;
      float* y = out + nc * out_plane + size_t(oh) * p.OW;
      const int ih0 = oh * p.stride_h - p.pad_top;
      int r0, r1, pr0, pr1;
      pool_tap_range(ih0, p.dil_h, p.R, p.H, r0, r1);
      pool_tap_range(ih0 + p.pad_top, p.dil_h, p.R, p.H + p.pad_top + p.pad_bottom, pr0, pr1);
      if (r1 == r0) {  // a window wholly in the padding: no tap, output 0
        for (int ow = 0; ow < p.OW; ++ow) y[ow] = 0.f;
        continue;
      }
      // One row alone is read in place; several are combined into the buffer first.
      const float* row = ic + size_t(ih0 + r0 * p.dil_h) * p.W;
      if (r1 - r0 > 1) {
        for (int iw = 0; iw < p.W; ++iw) acc[iw] = row[iw];
        for (int r = r0 + 1; r < r1; ++r) {
          const float* x = ic + size_t(ih0 + r * p.dil_h) * p.W;
          for (int iw = 0; iw < p.W; ++iw) {
            if constexpr (kMax) {
              acc[iw] = acc[iw] > x[iw] ? acc[iw] : x[iw];
            } else {
              acc[iw] += x[iw];
            }
          }
        }
        row = acc;
      }
      if (hi > lo) {
        const int iw0 = lo * p.stride_w - p.pad_left;
        const float scale = pool_window_scale<kMax>(p, iw0, (r1 - r0) * p.S, pr0, pr1);
        if (p.stride_w == 1)
          pool_row_interior<1, kMax>(row, y, lo, hi, 1, -p.pad_left, p.S, p.dil_w, scale);
        else if (p.stride_w == 2)
          pool_row_interior<2, kMax>(row, y, lo, hi, 2, -p.pad_left, p.S, p.dil_w, scale);
        else
          pool_row_interior<0, kMax>(row, y, lo, hi, p.stride_w, -p.pad_left, p.S, p.dil_w, scale);
      }
      for (int side = 0; side < 2; ++side) {
        const int e0 = side == 0 ? 0 : hi, e1 = side == 0 ? lo : p.OW;
        for (int ow = e0; ow < e1; ++ow) {
          const int iw0 = ow * p.stride_w - p.pad_left;
          int s0, s1;
          pool_tap_range(iw0, p.dil_w, p.S, p.W, s0, s1);
          float v = kMax ? -3.402823466e38f : 0.f;
          for (int s = s0; s < s1; ++s) {
            const float x = row[iw0 + s * p.dil_w];
            if constexpr (kMax) {
              v = v > x ? v : x;
            } else {
              v += x;
            }
          }
          const float scale = pool_window_scale<kMax>(p, iw0, (r1 - r0) * (s1 - s0), pr0, pr1);
          y[ow] = kMax ? (scale != 0.f ? v : 0.f) : v * scale;
        }
      }
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
  if (block == 1) {
    kind == PoolKind::kMax ? pool_plain_impl<true>(p, in, out, tp) : pool_plain_impl<false>(p, in, out, tp);
  } else if (block == 16) {
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
