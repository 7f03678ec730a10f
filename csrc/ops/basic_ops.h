// Plan ops over the portable element-wise / data-movement kernels (kernels/eltwise.h).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/eltwise.h"
#include "kernels/indexing.h"
#include "kernels/softmax.h"
#include "runtime/cpu_features.h"
#include "runtime/dtype.h"
#include "runtime/plan.h"

namespace si {

class BinaryOp : public Op {
 public:
  BinaryOp(BinaryKind kind, std::vector<int64_t> a_shape, std::vector<int64_t> b_shape,
           std::vector<int64_t> out_shape, Activation act, float alpha, float beta);
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override { return "binary_broadcast"; }

 private:
  BinaryKind kind_;
  std::vector<int64_t> a_, b_, out_;
  Activation act_;
  float alpha_, beta_;
};

class UnaryOp : public Op {
 public:
  UnaryOp(size_t n, Activation act, float alpha, float beta) : n_(n), act_(act), alpha_(alpha), beta_(beta) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override { return "unary_activation"; }

 private:
  size_t n_;
  Activation act_;
  float alpha_, beta_;
};

// Softmax over the middle axis of [outer, axis, inner]; the last axis (inner == 1) runs the
// vectorised row kernel of kernels/softmax.h.
class SoftmaxOp : public Op {
 public:
  SoftmaxOp(int64_t outer, int64_t axis, int64_t inner, bool log, Isa isa)
      : outer_(outer), axis_(axis), inner_(inner), log_(log), isa_(isa) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override {
    return log_ ? "log_softmax" : !rows() ? "softmax" : isa_ == Isa::kPortable ? "softmax_rows_portable" : "softmax_rows_avx2";
  }

 private:
  bool rows() const { return inner_ == 1 && !log_; }
  int64_t outer_, axis_, inner_;
  bool log_;
  Isa isa_;
};

class TransposeOp : public Op {
 public:
  TransposeOp(std::vector<int64_t> shape, std::vector<int64_t> perm) : shape_(std::move(shape)), perm_(std::move(perm)) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override { return "transpose"; }

 private:
  std::vector<int64_t> shape_, perm_;
};

// Concatenation of k inputs viewed as [outer, inner_i]; output [outer, sum inner_i].
class ConcatOp : public Op {
 public:
  ConcatOp(int64_t outer, std::vector<int64_t> inners) : outer_(outer), inners_(std::move(inners)) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override { return "concat"; }

 private:
  int64_t outer_;
  std::vector<int64_t> inners_;
};

class ReduceOp : public Op {
 public:
  ReduceOp(std::vector<int64_t> shape, std::vector<bool> axes, ReduceKind kind) : shape_(std::move(shape)), axes_(std::move(axes)), kind_(kind) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override {
    return kind_ == ReduceKind::kMean ? "reduce_mean" : kind_ == ReduceKind::kL2 ? "reduce_l2" : "reduce_sum";
  }

 private:
  std::vector<int64_t> shape_;
  std::vector<bool> axes_;
  ReduceKind kind_;
};

class PadOp : public Op {
 public:
  PadOp(std::vector<int64_t> shape, std::vector<int64_t> pads, float value) : shape_(std::move(shape)), pads_(std::move(pads)), value_(value) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override { return "pad_constant"; }

 private:
  std::vector<int64_t> shape_, pads_;
  float value_;
};

// ---- ops on typed slots (the slot holds the raw bytes of int64 / int32 / bool values) ----

class CastOp : public Op {
 public:
  CastOp(size_t n, DType from, DType to) : n_(n), from_(from), to_(to) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    cast(in[0], from_, out[0], to_, n_, pool);
  }
  const char* kernel_name() const override { return "cast"; }

 private:
  size_t n_;
  DType from_, to_;
};

// Comparison of two `type` tensors into a bool tensor, with broadcasting.
class CompareOp : public Op {
 public:
  CompareOp(CompareKind kind, DType type, std::vector<int64_t> a, std::vector<int64_t> b, std::vector<int64_t> out)
      : kind_(kind), type_(type), a_(std::move(a)), b_(std::move(b)), out_(std::move(out)) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    compare_broadcast(kind_, type_, in[0], a_, in[1], b_, reinterpret_cast<uint8_t*>(out[0]), out_, pool);
  }
  const char* kernel_name() const override { return "compare_broadcast"; }

 private:
  CompareKind kind_;
  DType type_;
  std::vector<int64_t> a_, b_, out_;
};

// inputs: cond (bool), x, y; output: cond ? x : y, with broadcasting.
class WhereOp : public Op {
 public:
  WhereOp(std::vector<int64_t> cond, std::vector<int64_t> x, std::vector<int64_t> y, std::vector<int64_t> out,
          size_t elem_size)
      : cond_(std::move(cond)), x_(std::move(x)), y_(std::move(y)), out_(std::move(out)), elem_size_(elem_size) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    where_broadcast(reinterpret_cast<const uint8_t*>(in[0]), cond_, in[1], x_, in[2], y_, out[0], out_, elem_size_, pool);
  }
  const char* kernel_name() const override { return "where_broadcast"; }

 private:
  std::vector<int64_t> cond_, x_, y_, out_;
  size_t elem_size_;
};

class ExpandOp : public Op {
 public:
  ExpandOp(std::vector<int64_t> x, std::vector<int64_t> out, size_t elem_size)
      : x_(std::move(x)), out_(std::move(out)), elem_size_(elem_size) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    expand(in[0], x_, out[0], out_, elem_size_, pool);
  }
  const char* kernel_name() const override { return "expand"; }

 private:
  std::vector<int64_t> x_, out_;
  size_t elem_size_;
};

// inputs: data [outer, axis_dim, inner], indices (int64 or int32); output [outer, n_indices, inner].
class GatherOp : public Op {
 public:
  GatherOp(int64_t outer, int64_t axis_dim, int64_t inner, size_t elem_size, int64_t n_indices, bool indices_int32)
      : outer_(outer), axis_dim_(axis_dim), inner_(inner), elem_size_(elem_size), n_indices_(n_indices),
        indices_int32_(indices_int32) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    gather(in[0], outer_, axis_dim_, inner_, elem_size_, in[1], indices_int32_, n_indices_, out[0], pool);
  }
  const char* kernel_name() const override { return "gather"; }

 private:
  int64_t outer_, axis_dim_, inner_;
  size_t elem_size_;
  int64_t n_indices_;
  bool indices_int32_;
};

class SliceOp : public Op {
 public:
  SliceOp(std::vector<int64_t> shape, std::vector<int64_t> starts, std::vector<int64_t> steps,
          std::vector<int64_t> out_shape, size_t elem_size)
      : shape_(std::move(shape)), starts_(std::move(starts)), steps_(std::move(steps)),
        out_shape_(std::move(out_shape)), elem_size_(elem_size) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    slice(in[0], shape_, starts_, steps_, out_shape_, elem_size_, out[0], pool);
  }
  const char* kernel_name() const override { return "slice"; }

 private:
  std::vector<int64_t> shape_, starts_, steps_, out_shape_;
  size_t elem_size_;
};

// input [outer, sum(widths), inner]; one output per width.
class SplitOp : public Op {
 public:
  SplitOp(int64_t outer, std::vector<int64_t> widths, int64_t inner, size_t elem_size)
      : outer_(outer), widths_(std::move(widths)), inner_(inner), elem_size_(elem_size) {}
  void run(const float* const* in, float* const* out, ThreadPool*) const override {
    split(in[0], outer_, widths_, inner_, elem_size_, reinterpret_cast<void* const*>(out));
  }
  const char* kernel_name() const override { return "split"; }

 private:
  int64_t outer_;
  std::vector<int64_t> widths_;
  int64_t inner_;
  size_t elem_size_;
};

class CopyOp : public Op {
 public:
  explicit CopyOp(size_t n) : n_(n) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override { return "copy"; }

 private:
  size_t n_;
};

}  // namespace si
