#include "kernels/reorder.h"

#include <algorithm>
#include <cstddef>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace si {

int nchwc_block(Isa isa) { return isa == Isa::kAvx512 ? 16 : 8; }

namespace {
constexpr int kTile = 64;  // spatial positions per transpose step: keeps both sides in L1

template <class F>
void run_tasks(ThreadPool* pool, size_t n, const F& f) {
  if (pool && pool->num_threads() > 1 && n > 1) {
    pool->parallel_for(n, f);
  } else {
    for (size_t i = 0; i < n; ++i) f(i);
  }
}

// dst[j][i] = src[i][j] for i < rows, j < cols; rows ld_src apart in src, ld_dst apart in dst.
// By 4x4 blocks of SSE registers, the edges one at a time: one float at a time, the layout
// changes around the sparse layers ran at 8-15 GB/s on maps in L2 (4-6x faster so).
void transpose_small(const float* src, size_t ld_src, float* dst, size_t ld_dst, int rows, int cols) {
  int i = 0;
#if defined(__SSE2__)
  const int c4 = cols / 4 * 4;
  for (; i + 4 <= rows; i += 4) {
    for (int j = 0; j < c4; j += 4) {
      __m128 r0 = _mm_loadu_ps(src + (i + 0) * ld_src + j), r1 = _mm_loadu_ps(src + (i + 1) * ld_src + j);
      __m128 r2 = _mm_loadu_ps(src + (i + 2) * ld_src + j), r3 = _mm_loadu_ps(src + (i + 3) * ld_src + j);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(dst + (j + 0) * ld_dst + i, r0);
      _mm_storeu_ps(dst + (j + 1) * ld_dst + i, r1);
      _mm_storeu_ps(dst + (j + 2) * ld_dst + i, r2);
      _mm_storeu_ps(dst + (j + 3) * ld_dst + i, r3);
    }
    for (int j = c4; j < cols; ++j)
      for (int ii = i; ii < i + 4; ++ii) dst[j * ld_dst + ii] = src[ii * ld_src + j];
  }
#endif
  for (; i < rows; ++i)
    for (int j = 0; j < cols; ++j) dst[j * ld_dst + i] = src[i * ld_src + j];
}
}  // namespace

void reorder_nchw_to_nchwc(const float* src, float* dst, int N, int C, int HW, int B, ThreadPool* pool) {
  const int Cb = (C + B - 1) / B;
  run_tasks(pool, size_t(N) * Cb, [&](size_t t) {
    const int n = int(t / Cb), cb = int(t % Cb);
    const int nc = std::min(B, C - cb * B);
    const float* s = src + (size_t(n) * C + size_t(cb) * B) * HW;
    float* d = dst + (size_t(n) * Cb + cb) * size_t(HW) * B;
    for (int h0 = 0; h0 < HW; h0 += kTile) {
      const int h1 = std::min(HW, h0 + kTile);
      transpose_small(s + h0, HW, d + size_t(h0) * B, B, nc, h1 - h0);
      for (int c = nc; c < B; ++c)
        for (int h = h0; h < h1; ++h) d[size_t(h) * B + c] = 0.f;
    }
  });
}

void reorder_nchwc_to_nchw(const float* src, float* dst, int N, int C, int HW, int B, ThreadPool* pool) {
  const int Cb = (C + B - 1) / B;
  run_tasks(pool, size_t(N) * Cb, [&](size_t t) {
    const int n = int(t / Cb), cb = int(t % Cb);
    const int nc = std::min(B, C - cb * B);
    const float* s = src + (size_t(n) * Cb + cb) * size_t(HW) * B;
    float* d = dst + (size_t(n) * C + size_t(cb) * B) * HW;
    for (int h0 = 0; h0 < HW; h0 += kTile) {
      const int h1 = std::min(HW, h0 + kTile);
      transpose_small(s + size_t(h0) * B, B, d + h0, HW, h1 - h0, nc);
    }
  });
}

void gather_stride(const float* src, int64_t stride, float* dst, int n) {
  int j = 0;
#if defined(__SSE2__)
  if (stride == 2)  // (j + 4 < n: the second load's last float, src[2j + 7], is never past src[2n - 2])
    for (; j + 4 < n; j += 4)
      _mm_storeu_ps(dst + j, _mm_shuffle_ps(_mm_loadu_ps(src + 2 * j), _mm_loadu_ps(src + 2 * j + 4),
                                            _MM_SHUFFLE(2, 0, 2, 0)));
#endif
  for (; j < n; ++j) dst[j] = src[j * stride];
}

void pad_rows(const float* src, float* dst, int planes, int H, int W, int pad_top, int pad_bottom, ThreadPool* pool) {
  const size_t plane = size_t(H) * W, padded = size_t(pad_top + H + pad_bottom) * W;
  // Tasks of whole planes, ~4 per thread (a plane of a deep layer is a few hundred floats).
  const size_t tasks = pool && pool->num_threads() > 1 ? std::min<size_t>(planes, 4 * pool->num_threads()) : 1;
  run_tasks(pool, tasks, [&](size_t t) {
    for (size_t p = t * planes / tasks; p < (t + 1) * planes / tasks; ++p) {
      float* d = dst + p * padded;
      std::fill(d, d + size_t(pad_top) * W, 0.f);
      std::copy(src + p * plane, src + (p + 1) * plane, d + size_t(pad_top) * W);
      std::fill(d + size_t(pad_top) * W + plane, d + padded, 0.f);
    }
  });
}

namespace {
// Both column phases of one padded row at once (stride 2): d0[j] = row[2j + off], d1[j] =
// row[2j + off + 1], 0 outside [0, W). Each source row is read once, 8 floats per step split
// into even and odd by two SSE shuffles (1.6-2x faster than gather_stride per phase on
// resnet50's stride-2 inputs, in isolation).
void split_row_stride2(const float* row, int W, int off, float* d0, float* d1, int Wh) {
  auto at = [&](int w) { return w >= 0 && w < W ? row[w] : 0.f; };
  int j = 0;
  for (; j < Wh && 2 * j + off < 0; ++j) d0[j] = at(2 * j + off), d1[j] = at(2 * j + off + 1);
#if defined(__SSE2__)
  for (; j + 4 <= Wh && 2 * j + off + 8 <= W; j += 4) {
    const __m128 a = _mm_loadu_ps(row + 2 * j + off), b = _mm_loadu_ps(row + 2 * j + off + 4);
    _mm_storeu_ps(d0 + j, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
    _mm_storeu_ps(d1 + j, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  }
#endif
  for (; j < Wh; ++j) d0[j] = at(2 * j + off), d1[j] = at(2 * j + off + 1);
}
}  // namespace

void pad_phase_split(const float* src, float* dst, int C, int H, int W, int pad_top, int pad_left, int sh,
                     int sw, int Hh, int Wh, ThreadPool* pool) {
  const size_t plane = size_t(Hh) * Wh;
  // One task per row phase and channel, each source row read once for all its column phases.
  run_tasks(pool, size_t(sh) * C, [&](size_t t) {
    const int ph = int(t / C), c = int(t % C);
    const float* s = src + size_t(c) * H * W;
    // Row i of column phase pw (phase ph * sw + pw: planes phase-major, then channel).
    auto drow = [&](int pw, int i) { return dst + ((size_t(ph) * sw + pw) * C + c) * plane + size_t(i) * Wh; };
    for (int i = 0; i < Hh; ++i) {
      const int h = i * sh + ph - pad_top;
      if (h < 0 || h >= H) {
        for (int pw = 0; pw < sw; ++pw) std::fill(drow(pw, i), drow(pw, i) + Wh, 0.f);
        continue;
      }
      const float* srow = s + size_t(h) * W;
      if (sw == 2) {
        split_row_stride2(srow, W, -pad_left, drow(0, i), drow(1, i), Wh);
        continue;
      }
      for (int pw = 0; pw < sw; ++pw) {
        float* d = drow(pw, i);
        const int off = pw - pad_left;
        if (sw == 1) {
          // Columns [j0, j1) read image column j + off inside the image; the rest is padding.
          const int j0 = std::min(Wh, std::max(0, -off)), j1 = std::max(j0, std::min(Wh, W - off));
          std::fill(d, d + j0, 0.f);
          std::copy(srow + (j0 + off), srow + (j1 + off), d + j0);
          std::fill(d + j1, d + Wh, 0.f);
        } else {  // strides of 3 and more
          for (int j = 0; j < Wh; ++j) {
            const int w = j * sw + off;
            d[j] = (w >= 0 && w < W) ? srow[w] : 0.f;
          }
        }
      }
    }
  });
}

}  // namespace si
