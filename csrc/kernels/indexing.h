// Indexing and slicing kernels on plain row-major tensors whose elements are moved as bits
// (elem_size 1, 4 or 8 bytes), so one kernel serves float32, int32, int64 and bool tensors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/thread_pool.h"

namespace si {

// Gather along the middle axis of data viewed as [outer, axis_dim, inner]:
// out[o, i, :] = data[o, idx[i], :] for the n_indices indices (int64, or int32 when
// indices_int32). Negative indices count from the end. Every index is checked before anything
// is written: one outside [-axis_dim, axis_dim) throws std::out_of_range naming it.
void gather(const void* data, int64_t outer, int64_t axis_dim, int64_t inner, size_t elem_size,
            const void* indices, bool indices_int32, int64_t n_indices, void* out, ThreadPool* pool);

// out[i_0, ..., i_r] = x[starts[0] + i_0 * steps[0], ...] for every index of out_shape
// (steps may be negative; the caller has clamped starts so every read is inside x).
void slice(const void* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& starts,
           const std::vector<int64_t>& steps, const std::vector<int64_t>& out_shape, size_t elem_size,
           void* out, ThreadPool* pool);

// Splits x viewed as [outer, sum(widths), inner] along its middle axis: outs[k] receives the
// [outer, widths[k], inner] block that starts at the sum of the widths before it.
void split(const void* x, int64_t outer, const std::vector<int64_t>& widths, int64_t inner, size_t elem_size,
           void* const* outs);

}  // namespace si
