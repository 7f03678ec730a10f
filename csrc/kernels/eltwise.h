// Element-wise and data-movement kernels on plain (row-major) tensors of up to kMaxDims dims.
// Portable code; the compiler vectorises the contiguous inner loops.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/epilogue.h"
#include "runtime/dtype.h"
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

// Comparisons, and the logical ops (on bool operands: nonzero is true).
enum class CompareKind : int {
  kEqual = 0, kLess = 1, kGreater = 2, kLessOrEqual = 3, kGreaterOrEqual = 4, kNotEqual = 5,
  kAnd = 6, kOr = 7, kXor = 8,
};

// out[i] = (a[i'] cmp b[i'']) as bool bytes (0 or 1); both operands have element type `type`;
// broadcasting as in binary_broadcast.
void compare_broadcast(CompareKind kind, DType type, const void* a, const std::vector<int64_t>& a_shape,
                       const void* b, const std::vector<int64_t>& b_shape, uint8_t* out,
                       const std::vector<int64_t>& out_shape, ThreadPool* pool);

// out = cond ? x : y element-wise, with broadcasting (the three shapes left-padded to
// out_shape's rank); x, y and out hold elements of elem_size bytes (1, 4 or 8).
void where_broadcast(const uint8_t* cond, const std::vector<int64_t>& cond_shape, const void* x,
                     const std::vector<int64_t>& x_shape, const void* y, const std::vector<int64_t>& y_shape,
                     void* out, const std::vector<int64_t>& out_shape, size_t elem_size, ThreadPool* pool);

// Broadcast copy of x (shape left-padded to out_shape's rank) to out_shape; elem_size 1, 4 or 8.
void expand(const void* x, const std::vector<int64_t>& x_shape, void* out, const std::vector<int64_t>& out_shape,
            size_t elem_size, ThreadPool* pool);

// Converts n elements with C++ (= ONNX Runtime) semantics: float to integer truncates toward
// zero, anything to bool is `!= 0`.
void cast(const void* x, DType from, void* y, DType to, size_t n, ThreadPool* pool);

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

enum class ReduceKind : int { kSum = 0, kMean = 1, kL2 = 2 };

// Sum, mean or L2 norm over the axes flagged in `reduce_axis` of x with `shape`; y has the
// kept dims.
void reduce(const float* x, float* y, const std::vector<int64_t>& shape,
            const std::vector<bool>& reduce_axis, ReduceKind kind, ThreadPool* pool);

// Constant padding: pads[i] = elements added before dim i, pads[rank + i] = after.
void pad_constant(const float* x, float* y, const std::vector<int64_t>& shape,
                  const std::vector<int64_t>& pads, float value);

}  // namespace si
