// Layer normalisation: the portable (reference) rows kernel and the dispatch of the family.
#include "kernels/norm.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace si {

void layer_norm_rows_portable(const float* x, const float* gamma, const float* beta, float* y, int64_t r0,
                              int64_t r1, int64_t n, float eps, float* mean_out, float* rstd_out) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += xr[i];
    const double mean = sum / double(n);
    double sq = 0.0;
    for (int64_t i = 0; i < n; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const float rstd = float(1.0 / std::sqrt(sq / double(n) + double(eps)));
    const float m = float(mean);
    if (mean_out) mean_out[r] = m;
    if (rstd_out) rstd_out[r] = rstd;
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) * rstd * gamma[i] + (beta ? beta[i] : 0.f);
  }
}

void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t n,
                float eps, Isa isa, ThreadPool* pool, float* mean, float* rstd) {
  if (rows < 0 || n < 1) throw std::invalid_argument("layer_norm: need rows >= 0 and a row length n >= 1");
  if (int(isa) > int(best_isa()))
    throw std::invalid_argument(std::string("layer_norm: ISA ") + isa_name(isa) + " is not supported by this CPU");
  auto rows_fn = isa == Isa::kPortable ? layer_norm_rows_portable : layer_norm_rows_avx2;
  // Chunks of ~16K floats: enough work per task to amortise the hand-out.
  const int64_t chunk = std::max<int64_t>(1, (1 << 14) / n);
  const int64_t tasks = (rows + chunk - 1) / chunk;
  auto work = [&](size_t t) {
    const int64_t r0 = int64_t(t) * chunk;
    rows_fn(x, gamma, beta, y, r0, std::min(rows, r0 + chunk), n, eps, mean, rstd);
  };
  if (pool && tasks > 1) pool->parallel_for(size_t(tasks), work);
  else for (int64_t t = 0; t < tasks; ++t) work(size_t(t));
}

}  // namespace si
