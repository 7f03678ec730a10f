// Row softmax: y[r, :] = softmax(x[r, :] * scale + mask[r, :]) over rows of n floats, with row
// strides ldx / ldy (x == y allowed) and an optional additive mask whose rows are mask_ld
// apart (0: one mask row for every row). The attention kernel applies it to its score tile;
// SoftmaxOp uses it for the last axis.
//
// Variants (kSoftmaxVariants): portable (the reference, std::exp) and avx2 (AVX2+FMA exp
// polynomial, ~1e-7 relative). AVX-512 machines run the AVX2 variant.
#pragma once
#include <cstdint>

#include "runtime/cpu_features.h"

namespace si {

void softmax_rows(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, float scale,
                  const float* mask, int64_t mask_ld, Isa isa);

inline constexpr Isa kSoftmaxVariants[] = {Isa::kPortable, Isa::kAvx2};

// ---- family internals ----
void softmax_rows_portable(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, float scale,
                           const float* mask, int64_t mask_ld);
void softmax_rows_avx2(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, float scale,
                       const float* mask, int64_t mask_ld);

}  // namespace si
