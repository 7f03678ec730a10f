#include "kernels/reorder.h"

#include <algorithm>
#include <cstddef>

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
      for (int c = 0; c < nc; ++c)
        for (int h = h0; h < h1; ++h) d[size_t(h) * B + c] = s[size_t(c) * HW + h];
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
      for (int c = 0; c < nc; ++c)
        for (int h = h0; h < h1; ++h) d[size_t(c) * HW + h] = s[size_t(h) * B + c];
    }
  });
}

}  // namespace si
