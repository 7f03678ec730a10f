#include "kernels/eltwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

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

// Broadcast geometry of up to kMaxOperands operands against one output shape: output dims of
// size 1 dropped, adjacent dims merged where every operand broadcasts (or not) alike; strides
// in elements, 0 where an operand is broadcast.
constexpr size_t kMaxOperands = 3;

struct Broadcast {
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides;  // [operand][dim]
};

Broadcast collapse(const std::vector<const std::vector<int64_t>*>& ins, const std::vector<int64_t>& os,
                   const char* what) {
  const size_t r = os.size(), k = ins.size();
  for (const auto* s : ins)
    if (s->size() != r) throw std::invalid_argument(std::string(what) + ": rank mismatch");
  Broadcast out;
  std::vector<std::vector<int64_t>> flags(k);
  for (size_t d = 0; d < r; ++d) {
    if (os[d] == 1) continue;
    bool merge = !out.shape.empty();
    for (size_t j = 0; j < k; ++j) {
      const int64_t dim = (*ins[j])[d];
      if (dim != 1 && dim != os[d]) throw std::invalid_argument(std::string(what) + ": shapes do not broadcast");
      if (merge && (flags[j].back() != 0) != (dim != 1)) merge = false;
    }
    if (merge) {
      out.shape.back() *= os[d];
    } else {
      out.shape.push_back(os[d]);
      for (size_t j = 0; j < k; ++j) flags[j].push_back((*ins[j])[d] != 1 ? 1 : 0);
    }
  }
  if (out.shape.empty()) {
    out.shape = {1};
    for (size_t j = 0; j < k; ++j) flags[j] = {1};
  }
  // Turn the 0/1 flags into element strides.
  out.strides.assign(k, std::vector<int64_t>(out.shape.size(), 0));
  for (size_t j = 0; j < k; ++j) {
    int64_t run = 1;
    for (size_t d = out.shape.size(); d-- > 0;) {
      if (flags[j][d]) {
        out.strides[j][d] = run;
        run *= out.shape[d];
      }
    }
  }
  return out;
}

// Calls fn(row, offsets) for every output row (all collapsed dims but the last), offsets[j]
// being operand j's element offset at the row's start; rows are split into parallel chunks.
template <class F>
void for_each_row(const Broadcast& bc, ThreadPool* pool, const F& fn) {
  const size_t r = bc.shape.size(), k = bc.strides.size();
  const int64_t inner = bc.shape[r - 1];
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < r; ++d) rows *= bc.shape[d];
  const int64_t total = rows * inner;
  const int64_t chunk_rows = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(inner, 1));
  const int64_t tasks = (rows + chunk_rows - 1) / chunk_rows;
  auto work = [&](size_t t) {
    const int64_t r0 = int64_t(t) * chunk_rows, r1 = std::min(rows, r0 + chunk_rows);
    int64_t offs[kMaxOperands];
    for (int64_t row = r0; row < r1; ++row) {
      int64_t rem = row;
      for (size_t j = 0; j < k; ++j) offs[j] = 0;
      for (size_t d = r - 1; d-- > 0;) {
        const int64_t i = rem % bc.shape[d];
        rem /= bc.shape[d];
        for (size_t j = 0; j < k; ++j) offs[j] += i * bc.strides[j][d];
      }
      fn(row, offs);
    }
  };
  if (pool && total > (1 << 16)) pool->parallel_for(size_t(tasks), work);
  else for (int64_t t = 0; t < tasks; ++t) work(size_t(t));
}

template <BinaryKind K>
void binary_impl(const float* a, const float* b, float* y, const Broadcast& bc, Activation act,
                 float alpha, float beta, ThreadPool* pool) {
  const int64_t inner = bc.shape.back();
  const int64_t ia = bc.strides[0].back() ? 1 : 0, ib = bc.strides[1].back() ? 1 : 0;
  for_each_row(bc, pool, [&](int64_t row, const int64_t* offs) {
    binary_row<K>(a + offs[0], ia, b + offs[1], ib, y + row * inner, inner, act, alpha, beta);
  });
}

template <class T>
bool compare(CompareKind kind, T x, T y) {
  switch (kind) {
    case CompareKind::kEqual: return x == y;
    case CompareKind::kLess: return x < y;
    case CompareKind::kGreater: return x > y;
    case CompareKind::kLessOrEqual: return x <= y;
    case CompareKind::kGreaterOrEqual: return x >= y;
    case CompareKind::kNotEqual: return x != y;  // NaN != NaN: IsNaN(x) is x != x
    case CompareKind::kAnd: return (x != T(0)) && (y != T(0));
    case CompareKind::kOr: return (x != T(0)) || (y != T(0));
    case CompareKind::kXor: return (x != T(0)) != (y != T(0));
  }
  return false;
}

template <class T, CompareKind K>
void compare_impl(const T* a, const T* b, uint8_t* y, const Broadcast& bc, ThreadPool* pool) {
  const int64_t inner = bc.shape.back();
  const int64_t ia = bc.strides[0].back() ? 1 : 0, ib = bc.strides[1].back() ? 1 : 0;
  for_each_row(bc, pool, [&](int64_t row, const int64_t* offs) {
    const T* ar = a + offs[0];
    const T* br = b + offs[1];
    uint8_t* yr = y + row * inner;
    for (int64_t i = 0; i < inner; ++i) yr[i] = compare(K, ar[i * ia], br[i * ib]) ? 1 : 0;
  });
}

template <class T>
void compare_typed(CompareKind kind, const T* a, const T* b, uint8_t* y, const Broadcast& bc, ThreadPool* pool) {
  switch (kind) {
    case CompareKind::kEqual: return compare_impl<T, CompareKind::kEqual>(a, b, y, bc, pool);
    case CompareKind::kLess: return compare_impl<T, CompareKind::kLess>(a, b, y, bc, pool);
    case CompareKind::kGreater: return compare_impl<T, CompareKind::kGreater>(a, b, y, bc, pool);
    case CompareKind::kLessOrEqual: return compare_impl<T, CompareKind::kLessOrEqual>(a, b, y, bc, pool);
    case CompareKind::kGreaterOrEqual: return compare_impl<T, CompareKind::kGreaterOrEqual>(a, b, y, bc, pool);
    case CompareKind::kNotEqual: return compare_impl<T, CompareKind::kNotEqual>(a, b, y, bc, pool);
    case CompareKind::kAnd: return compare_impl<T, CompareKind::kAnd>(a, b, y, bc, pool);
    case CompareKind::kOr: return compare_impl<T, CompareKind::kOr>(a, b, y, bc, pool);
    case CompareKind::kXor: return compare_impl<T, CompareKind::kXor>(a, b, y, bc, pool);
  }
}

// Element types by size, for kernels that only move bits.
template <size_t N> struct Bits;
template <> struct Bits<1> { using type = uint8_t; };
template <> struct Bits<4> { using type = uint32_t; };
template <> struct Bits<8> { using type = uint64_t; };

template <class T>
void where_impl(const uint8_t* c, const T* x, const T* y, T* out, const Broadcast& bc, ThreadPool* pool) {
  const int64_t inner = bc.shape.back();
  const int64_t ic = bc.strides[0].back() ? 1 : 0, ix = bc.strides[1].back() ? 1 : 0,
                iy = bc.strides[2].back() ? 1 : 0;
  for_each_row(bc, pool, [&](int64_t row, const int64_t* offs) {
    const uint8_t* cr = c + offs[0];
    const T* xr = x + offs[1];
    const T* yr = y + offs[2];
    T* o = out + row * inner;
    for (int64_t i = 0; i < inner; ++i) o[i] = cr[i * ic] ? xr[i * ix] : yr[i * iy];
  });
}

template <class T>
void expand_impl(const T* x, T* out, const Broadcast& bc, ThreadPool* pool) {
  const int64_t inner = bc.shape.back();
  const bool contiguous = bc.strides[0].back() != 0;
  for_each_row(bc, pool, [&](int64_t row, const int64_t* offs) {
    T* o = out + row * inner;
    if (contiguous) std::memcpy(o, x + offs[0], size_t(inner) * sizeof(T));
    else std::fill(o, o + inner, x[offs[0]]);
  });
}

void check_elem_size(size_t elem_size, const char* what) {
  if (elem_size != 1 && elem_size != 4 && elem_size != 8)
    throw std::invalid_argument(std::string(what) + ": element size must be 1, 4 or 8 bytes");
}

template <class To, class From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) return v != From(0);
  else return static_cast<To>(v);
}

template <class From, class To>
void cast_impl(const From* x, To* y, size_t n, ThreadPool* pool) {
  const size_t chunk = 1 << 15, tasks = (n + chunk - 1) / chunk;
  auto work = [&](size_t t) {
    const size_t i0 = t * chunk, i1 = std::min(n, i0 + chunk);
    for (size_t i = i0; i < i1; ++i) y[i] = convert<To>(x[i]);
  };
  if (pool && n > (1 << 16)) pool->parallel_for(tasks, work);
  else for (size_t t = 0; t < tasks; ++t) work(t);
}

// Calls fn(T{}) with a value of the C++ type of `t` (bool for kBool: one byte, 0 or 1).
template <class F>
void with_type(DType t, const F& fn) {
  switch (t) {
    case DType::kF32: return fn(float{});
    case DType::kI64: return fn(int64_t{});
    case DType::kI32: return fn(int32_t{});
    case DType::kBool: return fn(bool{});
  }
}

}  // namespace

void binary_broadcast(BinaryKind kind, const float* a, const std::vector<int64_t>& a_shape,
                      const float* b, const std::vector<int64_t>& b_shape, float* out,
                      const std::vector<int64_t>& out_shape, Activation act, float alpha, float beta,
                      ThreadPool* pool) {
  const Broadcast bc = collapse({&a_shape, &b_shape}, out_shape, "binary");
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

void compare_broadcast(CompareKind kind, DType type, const void* a, const std::vector<int64_t>& a_shape,
                       const void* b, const std::vector<int64_t>& b_shape, uint8_t* out,
                       const std::vector<int64_t>& out_shape, ThreadPool* pool) {
  const Broadcast bc = collapse({&a_shape, &b_shape}, out_shape, "compare");
  with_type(type, [&](auto v) {
    using T = std::conditional_t<std::is_same_v<decltype(v), bool>, uint8_t, decltype(v)>;
    compare_typed(kind, static_cast<const T*>(a), static_cast<const T*>(b), out, bc, pool);
  });
}

void where_broadcast(const uint8_t* cond, const std::vector<int64_t>& cond_shape, const void* x,
                     const std::vector<int64_t>& x_shape, const void* y, const std::vector<int64_t>& y_shape,
                     void* out, const std::vector<int64_t>& out_shape, size_t elem_size, ThreadPool* pool) {
  check_elem_size(elem_size, "where");
  const Broadcast bc = collapse({&cond_shape, &x_shape, &y_shape}, out_shape, "where");
  auto run = [&](auto bits) {
    using T = decltype(bits);
    where_impl(cond, static_cast<const T*>(x), static_cast<const T*>(y), static_cast<T*>(out), bc, pool);
  };
  if (elem_size == 1) run(Bits<1>::type{});
  else if (elem_size == 4) run(Bits<4>::type{});
  else run(Bits<8>::type{});
}

void expand(const void* x, const std::vector<int64_t>& x_shape, void* out, const std::vector<int64_t>& out_shape,
            size_t elem_size, ThreadPool* pool) {
  check_elem_size(elem_size, "expand");
  const Broadcast bc = collapse({&x_shape}, out_shape, "expand");
  auto run = [&](auto bits) {
    using T = decltype(bits);
    expand_impl(static_cast<const T*>(x), static_cast<T*>(out), bc, pool);
  };
  if (elem_size == 1) run(Bits<1>::type{});
  else if (elem_size == 4) run(Bits<4>::type{});
  else run(Bits<8>::type{});
}

void cast(const void* x, DType from, void* y, DType to, size_t n, ThreadPool* pool) {
  // bool is stored as one byte holding 0 or 1, which C++'s bool is on every ABI we target.
  static_assert(sizeof(bool) == 1, "bool tensors are one byte per element");
  with_type(from, [&](auto f) {
    with_type(to, [&](auto t) {
      using From = decltype(f);
      using To = decltype(t);
      cast_impl(static_cast<const From*>(x), static_cast<To*>(y), n, pool);
    });
  });
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
            const std::vector<bool>& reduce_axis, ReduceKind kind, ThreadPool*) {
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
    acc[o] += kind == ReduceKind::kL2 ? double(x[i]) * x[i] : double(x[i]);
    for (size_t d = r; d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  const double scale = kind == ReduceKind::kMean && count ? 1.0 / double(count) : 1.0;
  for (int64_t o = 0; o < out_size; ++o)
    y[o] = float(kind == ReduceKind::kL2 ? std::sqrt(acc[o]) : acc[o] * scale);
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
