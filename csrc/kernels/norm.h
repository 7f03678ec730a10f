// Normalisation kernels. layer_norm normalises each row of a [rows, n] view:
//   y[r, :] = (x[r, :] - mean_r) / sqrt(var_r + eps) * gamma + beta
// with the biased variance (ONNX LayerNormalization, PyTorch nn.LayerNorm). gamma has n
// entries; beta has n entries or is nullptr. mean / rstd (nullable) receive each row's mean
// and 1 / sqrt(var + eps).
//
// Variants (kNormVariants): portable (double accumulation; the reference) and avx2 (AVX2+FMA,
// float accumulation in 4 x 8 lanes). AVX-512 machines run the AVX2 variant.
#pragma once
#include <cstdint>

#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace si {

void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t n,
                float eps, Isa isa, ThreadPool* pool, float* mean = nullptr, float* rstd = nullptr);

inline constexpr Isa kNormVariants[] = {Isa::kPortable, Isa::kAvx2};

// ---- family internals: one row range [r0, r1) per call ----
void layer_norm_rows_portable(const float* x, const float* gamma, const float* beta, float* y, int64_t r0,
                              int64_t r1, int64_t n, float eps, float* mean, float* rstd);
void layer_norm_rows_avx2(const float* x, const float* gamma, const float* beta, float* y, int64_t r0,
                          int64_t r1, int64_t n, float eps, float* mean, float* rstd);

}  // namespace si
