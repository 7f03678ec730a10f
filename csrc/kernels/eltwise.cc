#include "kernels/eltwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace si {
namespace {

template <BinaryKind K>
inline float binop(float x, float y) {
  if constexpr (K == BinaryKind::kAdd) return x + y;
  if constexpr (K == BinaryKind::kSub) return x - y;
  if constexpr (K == BinaryKind::kMul) return x * y;
  if constexpr (K == BinaryKind::kDiv) return x / y;
  if constexpr (K == BinaryKind::kPow) return std::pow(x, y);
  if constexpr (K == BinaryKind::kMax) return x > y ? x : (std::isnan(x) ? x : y);
  if constexpr (K == BinaryKind::kMin) return x < y ? x : (std::isnan(x) ? x : y);
  return 0.f;
}

// Inner loop over a contiguous run of the output; sa/sb are 0 (broadcast) or 1.
template <BinaryKind K>
void binary_row(const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n,
                Activation act, float alpha, float beta) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] = binop<K>(a[i], b[i]);
  } else if (sa == 1) {
    const float bv = b[0];
    for (int64_t i = 0; i < n; ++i) y[i] = binop<K>(a[i], bv);
  } else if (sb == 1) {
    const float av = a[0];
    for (int64_t i = 0; i < n; ++i) y[i] = binop<K>(av, b[i]);
  } else {
    const float v = binop<K>(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) y[i] = v;
  }
  if (act != Activation::kNone)
    for (int64_t i = 0; i < n; ++i) y[i] = apply_activation(y[i], act, alpha, beta);
}

struct Broadcast {
  // Collapsed shapes: dims merged where both operands broadcast (or not) the same way.
  std::vector<int64_t> shape, sa, sb;
};

Broadcast collapse(const std::vector<int64_t>& as, const std::vector<int64_t>& bs,
                   const std::vector<int64_t>& os) {
  const size_t r = os.size();
  if (as.size() != r || bs.size() != r) throw std::invalid_argument("binary: rank mismatch");
  Broadcast out;
  for (size_t d = 0; d < r; ++d) {
    if (os[d] == 1) continue;
    const bool ba = as[d] == 1, bb = bs[d] == 1;
    if ((!ba && as[d] != os[d]) || (!bb && bs[d] != os[d])) throw std::invalid_argument("binary: shapes do not broadcast");
    int64_t fa = ba ? 0 : 1, fb = bb ? 0 : 1;
    if (!out.shape.empty() && (out.sa.back() != 0) == (fa != 0) && (out.sb.back() != 0) == (fb != 0)) {
      out.shape.back() *= os[d];
    } else {
      out.shape.push_back(os[d]);
      out.sa.push_back(fa);
      out.sb.push_back(fb);
    }
  }
  if (out.shape.empty()) { out.shape = {1}; out.sa = {1}; out.sb = {1}; }
  // Turn the 0/1 flags into element strides.
  int64_t ra = 1, rb = 1;
  for (size_t d = out.shape.size(); d-- > 0;) {
    const int64_t fa = out.sa[d], fb = out.sb[d];
    out.sa[d] = fa ? ra : 0;
    out.sb[d] = fb ? rb : 0;
    if (fa) ra *= out.shape[d];
    if (fb) rb *= out.shape[d];
  }
  return out;
}

template <BinaryKind K>
void binary_impl(const float* a, const float* b, float* y, const Broadcast& bc, Activation act,
                 float alpha, float beta, ThreadPool* pool) {
  const size_t r = bc.shape.size();
  const int64_t inner = bc.shape[r - 1];
  const int64_t ia = bc.sa[r - 1] ? 1 : 0, ib = bc.sb[r - 1] ? 1 : 0;
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < r; ++d) rows *= bc.shape[d];
  const int64_t total = rows * inner;
  const int64_t chunk_rows = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(inner, 1));
  const int64_t tasks = (rows + chunk_rows - 1) / chunk_rows;
  auto work = [&](size_t t) {
    const int64_t r0 = int64_t(t) * chunk_rows, r1 = std::min(rows, r0 + chunk_rows);
    for (int64_t row = r0; row < r1; ++row) {
      int64_t rem = row, oa = 0, ob = 0;
      for (size_t d = r - 1; d-- > 0;) {
        const int64_t i = rem % bc.shape[d];
        rem /= bc.shape[d];
        oa += i * bc.sa[d];
        ob += i * bc.sb[d];
      }
      binary_row<K>(a + oa, ia, b + ob, ib, y + row * inner, inner, act, alpha, beta);
    }
  };
  if (pool && total > (1 << 16)) pool->parallel_for(size_t(tasks), work);
  else for (int64_t t = 0; t < tasks; ++t) work(size_t(t));
}

}  // namespace

void binary_broadcast(BinaryKind kind, const float* a, const std::vector<int64_t>& a_shape,
                      const float* b, const std::vector<int64_t>& b_shape, float* out,
                      const std::vector<int64_t>& out_shape, Activation act, float alpha, float beta,
                      ThreadPool* pool) {
  const Broadcast bc = collapse(a_shape, b_shape, out_shape);
  switch (kind) {
    case BinaryKind::kAdd: return binary_impl<BinaryKind::kAdd>(a, b, out, bc, act, alpha, beta, pool);
    case BinaryKind::kSub: return binary_impl<BinaryKind::kSub>(a, b, out, bc, act, alpha, beta, pool);
    case BinaryKind::kMul: return binary_impl<BinaryKind::kMul>(a, b, out, bc, act, alpha, beta, pool);
    case BinaryKind::kDiv: return binary_impl<BinaryKind::kDiv>(a, b, out, bc, act, alpha, beta, pool);
    case BinaryKind::kPow: return binary_impl<BinaryKind::kPow>(a, b, out, bc, act, alpha, beta, pool);
    case BinaryKind::kMax: return binary_impl<BinaryKind::kMax>(a, b, out, bc, act, alpha, beta, pool);
    case BinaryKind::kMin: return binary_impl<BinaryKind::kMin>(a, b, out, bc, act, alpha, beta, pool);
  }
}

void unary_activation(const float* x, float* y, size_t n, Activation act, float alpha, float beta,
                      ThreadPool* pool) {
  const size_t chunk = 1 << 14, tasks = (n + chunk - 1) / chunk;
  auto work = [&](size_t t) {
    const size_t i0 = t * chunk, i1 = std::min(n, i0 + chunk);
    switch (act) {  // the common cheap ones get a loop the compiler vectorises
      case Activation::kNone:
        if (x != y) std::memcpy(y + i0, x + i0, (i1 - i0) * sizeof(float));
        break;
      case Activation::kRelu:
        for (size_t i = i0; i < i1; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
        break;
      default:
        for (size_t i = i0; i < i1; ++i) y[i] = apply_activation(x[i], act, alpha, beta);
    }
  };
  if (pool && n > (1 << 16)) pool->parallel_for(tasks, work);
  else for (size_t t = 0; t < tasks; ++t) work(t);
}

void softmax(const float* x, float* y, int64_t outer, int64_t axis, int64_t inner, bool log,
             ThreadPool* pool) {
  auto work = [&](size_t o) {
    const float* xo = x + int64_t(o) * axis * inner;
    float* yo = y + int64_t(o) * axis * inner;
    for (int64_t j = 0; j < inner; ++j) {
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t k = 0; k < axis; ++k) m = std::max(m, xo[k * inner + j]);
      float s = 0.f;
      for (int64_t k = 0; k < axis; ++k) {
        const float e = std::exp(xo[k * inner + j] - m);
        yo[k * inner + j] = e;
        s += e;
      }
      if (log) {
        const float ls = std::log(s) + m;
        for (int64_t k = 0; k < axis; ++k) yo[k * inner + j] = xo[k * inner + j] - ls;
      } else {
        const float inv = 1.f / s;
        for (int64_t k = 0; k < axis; ++k) yo[k * inner + j] *= inv;
      }
    }
  };
  if (pool && outer > 1 && outer * axis * inner > (1 << 14)) pool->parallel_for(size_t(outer), work);
  else for (int64_t o = 0; o < outer; ++o) work(size_t(o));
}

void transpose(const float* x, float* y, const std::vector<int64_t>& shape,
               const std::vector<int64_t>& perm, ThreadPool* pool) {
  const size_t r = shape.size();
  std::vector<int64_t> in_strides(r, 1), out_shape(r), src_stride(r);
  for (size_t d = r; d-- > 1;) in_strides[d - 1] = in_strides[d] * shape[d];
  for (size_t d = 0; d < r; ++d) {
    out_shape[d] = shape[perm[d]];
    src_stride[d] = in_strides[perm[d]];
  }
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < r; ++d) rows *= out_shape[d];
  const int64_t inner = r ? out_shape[r - 1] : 1, inner_stride = r ? src_stride[r - 1] : 1;
  auto work = [&](size_t row) {
    int64_t rem = int64_t(row), off = 0;
    for (size_t d = r - 1; d-- > 0;) {
      off += (rem % out_shape[d]) * src_stride[d];
      rem /= out_shape[d];
    }
    float* yr = y + int64_t(row) * inner;
    const float* xr = x + off;
    if (inner_stride == 1) std::memcpy(yr, xr, inner * sizeof(float));
    else for (int64_t i = 0; i < inner; ++i) yr[i] = xr[i * inner_stride];
  };
  if (pool && rows * inner > (1 << 16)) pool->parallel_for(size_t(rows), work);
  else for (int64_t row = 0; row < rows; ++row) work(size_t(row));
}

void copy_strided_block(const float* src, int64_t outer, int64_t inner_src, float* dst,
                        int64_t inner_dst, int64_t dst_offset) {
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(dst + o * inner_dst + dst_offset, src + o * inner_src, inner_src * sizeof(float));
}

void reduce(const float* x, float* y, const std::vector<int64_t>& shape,
            const std::vector<bool>& reduce_axis, bool mean, ThreadPool*) {
  const size_t r = shape.size();
  std::vector<int64_t> out_strides(r, 0);
  int64_t out_size = 1, count = 1, total = 1;
  for (size_t d = r; d-- > 0;) {
    total *= shape[d];
    if (reduce_axis[d]) { count *= shape[d]; continue; }
    out_strides[d] = out_size;
    out_size *= shape[d];
  }
  std::vector<double> acc(out_size, 0.0);
  std::vector<int64_t> idx(r, 0);
  for (int64_t i = 0; i < total; ++i) {
    int64_t o = 0;
    for (size_t d = 0; d < r; ++d) o += idx[d] * out_strides[d];
    acc[o] += x[i];
    for (size_t d = r; d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  const double scale = mean && count ? 1.0 / double(count) : 1.0;
  for (int64_t o = 0; o < out_size; ++o) y[o] = float(acc[o] * scale);
}

void pad_constant(const float* x, float* y, const std::vector<int64_t>& shape,
                  const std::vector<int64_t>& pads, float value) {
  const size_t r = shape.size();
  std::vector<int64_t> out_shape(r), out_strides(r, 1);
  for (size_t d = 0; d < r; ++d) out_shape[d] = shape[d] + pads[d] + pads[r + d];
  for (size_t d = r; d-- > 1;) out_strides[d - 1] = out_strides[d] * out_shape[d];
  int64_t out_total = 1, in_total = 1;
  for (size_t d = 0; d < r; ++d) { out_total *= out_shape[d]; in_total *= shape[d]; }
  std::fill(y, y + out_total, value);
  std::vector<int64_t> idx(r, 0);
  for (int64_t i = 0; i < in_total; ++i) {
    int64_t o = 0;
    bool inside = true;
    for (size_t d = 0; d < r; ++d) {
      const int64_t od = idx[d] + pads[d];
      if (od < 0 || od >= out_shape[d]) { inside = false; break; }
      o += od * out_strides[d];
    }
    if (inside) y[o] = x[i];
    for (size_t d = r; d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace si
