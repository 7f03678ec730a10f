#include "kernels/indexing.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace si {
namespace {

void check_elem_size(size_t elem_size, const char* what) {
  if (elem_size != 1 && elem_size != 4 && elem_size != 8)
    throw std::invalid_argument(std::string(what) + ": element size must be 1, 4 or 8 bytes");
}

template <class T>
void copy_strided(const T* src, int64_t step, T* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i * step];
}

}  // namespace

void gather(const void* data, int64_t outer, int64_t axis_dim, int64_t inner, size_t elem_size,
            const void* indices, bool indices_int32, int64_t n_indices, void* out, ThreadPool* pool) {
  check_elem_size(elem_size, "gather");
  // Normalised indices, validated before any write so a bad one leaves nothing half-done.
  std::vector<int64_t> idx(static_cast<size_t>(n_indices));
  for (int64_t i = 0; i < n_indices; ++i) {
    const int64_t v = indices_int32 ? static_cast<const int32_t*>(indices)[i] : static_cast<const int64_t*>(indices)[i];
    if (v < -axis_dim || v >= axis_dim)
      throw std::out_of_range("Gather: index " + std::to_string(v) + " (at flat position " + std::to_string(i) +
                              " of the indices) is out of range for an axis of size " + std::to_string(axis_dim) +
                              " (expected " + std::to_string(-axis_dim) + " .. " + std::to_string(axis_dim - 1) + ")");
    idx[static_cast<size_t>(i)] = v < 0 ? v + axis_dim : v;
  }
  const size_t row = static_cast<size_t>(inner) * elem_size;
  const char* src = static_cast<const char*>(data);
  char* dst = static_cast<char*>(out);
  const int64_t rows = outer * n_indices;
  auto work = [&](size_t r) {
    const int64_t o = int64_t(r) / n_indices, i = int64_t(r) % n_indices;
    std::memcpy(dst + r * row, src + (static_cast<size_t>(o * axis_dim + idx[static_cast<size_t>(i)])) * row, row);
  };
  if (pool && static_cast<size_t>(rows) * row > (256u << 10)) pool->parallel_for(static_cast<size_t>(rows), work);
  else for (int64_t r = 0; r < rows; ++r) work(static_cast<size_t>(r));
}

void slice(const void* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& starts,
           const std::vector<int64_t>& steps, const std::vector<int64_t>& out_shape, size_t elem_size,
           void* out, ThreadPool* pool) {
  check_elem_size(elem_size, "slice");
  const size_t r = shape.size();
  if (starts.size() != r || steps.size() != r || out_shape.size() != r || r == 0)
    throw std::invalid_argument("slice: shape, starts, steps and out_shape need one entry per dimension");
  std::vector<int64_t> stride(r, 1);
  for (size_t d = r - 1; d-- > 0;) stride[d] = stride[d + 1] * shape[d + 1];
  int64_t base = 0, rows = 1;
  for (size_t d = 0; d < r; ++d) base += starts[d] * stride[d];
  for (size_t d = 0; d + 1 < r; ++d) rows *= out_shape[d];
  const int64_t inner = out_shape[r - 1], inner_step = steps[r - 1];
  if (rows == 0 || inner == 0) return;
  auto work = [&](size_t row) {
    int64_t rem = int64_t(row), off = base;
    for (size_t d = r - 1; d-- > 0;) {
      off += (rem % out_shape[d]) * steps[d] * stride[d];
      rem /= out_shape[d];
    }
    char* dst = static_cast<char*>(out) + row * inner * elem_size;
    const char* src = static_cast<const char*>(x) + off * int64_t(elem_size);
    if (inner_step == 1) {
      std::memcpy(dst, src, size_t(inner) * elem_size);
    } else if (elem_size == 4) {
      copy_strided(reinterpret_cast<const uint32_t*>(src), inner_step, reinterpret_cast<uint32_t*>(dst), inner);
    } else if (elem_size == 8) {
      copy_strided(reinterpret_cast<const uint64_t*>(src), inner_step, reinterpret_cast<uint64_t*>(dst), inner);
    } else {
      copy_strided(reinterpret_cast<const uint8_t*>(src), inner_step, reinterpret_cast<uint8_t*>(dst), inner);
    }
  };
  if (pool && rows * inner > (1 << 16)) pool->parallel_for(size_t(rows), work);
  else for (int64_t row = 0; row < rows; ++row) work(size_t(row));
}

void split(const void* x, int64_t outer, const std::vector<int64_t>& widths, int64_t inner, size_t elem_size,
           void* const* outs) {
  check_elem_size(elem_size, "split");
  int64_t total = 0;
  for (int64_t w : widths) total += w;
  const size_t src_row = size_t(total * inner) * elem_size;
  size_t offset = 0;
  for (size_t k = 0; k < widths.size(); ++k) {
    const size_t n = size_t(widths[k] * inner) * elem_size;
    char* dst = static_cast<char*>(outs[k]);
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(dst + size_t(o) * n, static_cast<const char*>(x) + size_t(o) * src_row + offset, n);
    offset += n;
  }
}

}  // namespace si
