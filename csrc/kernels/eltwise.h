// Element-wise and data-movement kernels on plain (row-major) tensors of up to kMaxDims dims.
// Portable code; the compiler vectorises the contiguous inner loops.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/epilogue.h"
#include "runtime/thread_pool.h"

namespace si {

constexpr int kMaxDims = 8;

enum class BinaryKind : int { kAdd = 0, kSub = 1, kMul = 2, kDiv = 3, kPow = 4, kMax = 5, kMin = 6 };

// out[i] = act(a[i'] op b[i'']) with NumPy broadcasting: a_shape and b_shape are already
// left-padded with 1s to out_shape's rank.
void binary_broadcast(BinaryKind kind, const float* a, const std::vector<int64_t>& a_shape,
                      const float* b, const std::vector<int64_t>& b_shape, float* out,
                      const std::vector<int64_t>& out_shape, Activation act, float alpha, float beta,
                      ThreadPool* pool);

void unary_activation(const float* x, float* y, size_t n, Activation act, float alpha, float beta,
                      ThreadPool* pool);

// Softmax (or LogSoftmax) over the middle axis of a [outer, axis, inner] view.
void softmax(const float* x, float* y, int64_t outer, int64_t axis, int64_t inner, bool log,
             ThreadPool* pool);

void transpose(const float* x, float* y, const std::vector<int64_t>& shape,
               const std::vector<int64_t>& perm, ThreadPool* pool);

// Copies src (outer x inner_src) into dst (outer x inner_dst) at column offset dst_offset.
void copy_strided_block(const float* src, int64_t outer, int64_t inner_src, float* dst,
                        int64_t inner_dst, int64_t dst_offset);

// Mean (or sum) over the axes flagged in `reduce` of x with `shape`; y has the kept dims.
void reduce(const float* x, float* y, const std::vector<int64_t>& shape,
            const std::vector<bool>& reduce_axis, bool mean, ThreadPool* pool);

// Constant padding: pads[i] = elements added before dim i, pads[rank + i] = after.
void pad_constant(const float* x, float* y, const std::vector<int64_t>& shape,
                  const std::vector<int64_t>& pads, float value);

}  // namespace si
