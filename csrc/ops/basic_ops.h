// Plan ops over the portable element-wise / data-movement kernels (kernels/eltwise.h).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/eltwise.h"
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

class SoftmaxOp : public Op {
 public:
  SoftmaxOp(int64_t outer, int64_t axis, int64_t inner, bool log) : outer_(outer), axis_(axis), inner_(inner), log_(log) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override { return log_ ? "log_softmax" : "softmax"; }

 private:
  int64_t outer_, axis_, inner_;
  bool log_;
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
  ReduceOp(std::vector<int64_t> shape, std::vector<bool> axes, bool mean) : shape_(std::move(shape)), axes_(std::move(axes)), mean_(mean) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override { return mean_ ? "reduce_mean" : "reduce_sum"; }

 private:
  std::vector<int64_t> shape_;
  std::vector<bool> axes_;
  bool mean_;
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

class CopyOp : public Op {
 public:
  explicit CopyOp(size_t n) : n_(n) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  const char* kernel_name() const override { return "copy"; }

 private:
  size_t n_;
};

}  // namespace si
