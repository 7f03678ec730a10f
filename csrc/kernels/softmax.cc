// Row softmax: the portable (reference) variant and the family's dispatch.
#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace si {

void softmax_rows_portable(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, float scale,
                           const float* mask, int64_t mask_ld) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    const float* mr = mask ? mask + r * mask_ld : nullptr;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      yr[i] = xr[i] * scale + (mr ? mr[i] : 0.f);
      m = std::max(m, yr[i]);
    }
    float s = 0.f;
    for (int64_t i = 0; i < n; ++i) {
      yr[i] = std::exp(yr[i] - m);
      s += yr[i];
    }
    const float inv = 1.f / s;
    for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
  }
}

void softmax_rows(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, float scale,
                  const float* mask, int64_t mask_ld, Isa isa) {
  if (isa == Isa::kPortable) softmax_rows_portable(x, ldx, y, ldy, rows, n, scale, mask, mask_ld);
  else softmax_rows_avx2(x, ldx, y, ldy, rows, n, scale, mask, mask_ld);
}

}  // namespace si
