// Plan ops over the conv (NCHWc), GEMM and layout kernel families.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/conv.h"
#include "kernels/gemm.h"
#include "kernels/reorder.h"
#include "runtime/plan.h"

namespace si {

// inputs: x, [residual]; output: y (NCHWc; x is plain NCHW for the first-layer kernel).
class ConvOp : public Op {
 public:
  ConvOp(const ConvParams& p, const float* weight, const float* bias, Activation act, float alpha, float beta,
         Isa isa, bool has_residual)
      : conv_(p, weight, bias, act, alpha, beta, isa), has_residual_(has_residual) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    conv_.run(in[0], out[0], has_residual_ ? in[1] : nullptr, pool);
  }
  const char* kernel_name() const override { return conv_.kernel_name(); }
  size_t weight_bytes() const override { return conv_.weight_bytes(); }
  bool input_is_nchw() const { return conv_.input_is_nchw(); }

 private:
  ConvNchwc conv_;
  bool has_residual_;
};

// y[M x N] = epilogue(x[M x K] * W[K x N]); inputs: x, [residual]; bias held by the op.
class GemmOp : public Op {
 public:
  GemmOp(int M, const float* w, int K, int N, const float* bias, Activation act, float alpha, float beta,
         Isa isa, bool has_residual)
      : M_(M), b_(w, K, N, false, isa), bias_(bias ? std::vector<float>(bias, bias + N) : std::vector<float>()),
        act_(act), alpha_(alpha), beta_(beta), has_residual_(has_residual) {
    name_ = std::string("sgemm_packed_") + isa_name(isa);
  }
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    Epilogue ep;
    ep.bias = bias_.empty() ? nullptr : bias_.data();
    ep.residual = has_residual_ ? in[1] : nullptr;
    ep.act = act_;
    ep.alpha = alpha_;
    ep.beta = beta_;
    sgemm_packed(M_, b_.N(), b_.K(), in[0], b_.K(), b_, out[0], b_.N(), ep, pool);
  }
  const char* kernel_name() const override { return name_.c_str(); }
  size_t weight_bytes() const override { return b_.bytes() + bias_.size() * sizeof(float); }

 private:
  int M_;
  PackedB b_;
  std::vector<float> bias_;
  Activation act_;
  float alpha_, beta_;
  bool has_residual_;
  std::string name_;
};

class ReorderOp : public Op {
 public:
  ReorderOp(int n, int c, int hw, int block, bool to_blocked) : n_(n), c_(c), hw_(hw), block_(block), to_blocked_(to_blocked) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    if (to_blocked_) reorder_nchw_to_nchwc(in[0], out[0], n_, c_, hw_, block_, pool);
    else reorder_nchwc_to_nchw(in[0], out[0], n_, c_, hw_, block_, pool);
  }
  const char* kernel_name() const override { return to_blocked_ ? "reorder_nchw_to_nchwc" : "reorder_nchwc_to_nchw"; }

 private:
  int n_, c_, hw_, block_;
  bool to_blocked_;
};

}  // namespace si

#include "kernels/pool.h"

namespace si {

class PoolOp : public Op {
 public:
  PoolOp(const PoolParams& p, PoolKind kind, int block, Isa isa) : p_(p), kind_(kind), block_(block), isa_(isa) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    pool_nchwc(p_, kind_, in[0], out[0], block_, pool, isa_);
  }
  const char* kernel_name() const override { return kind_ == PoolKind::kMax ? "max_pool_nchwc" : "avg_pool_nchwc"; }

 private:
  PoolParams p_;
  PoolKind kind_;
  int block_;
  Isa isa_;
};

class GlobalAvgPoolOp : public Op {
 public:
  GlobalAvgPoolOp(int n, int c, int hw, int block, Isa isa) : n_(n), c_(c), hw_(hw), block_(block), isa_(isa) {}
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    global_avg_pool_nchwc(in[0], out[0], n_, c_, hw_, block_, pool, isa_);
  }
  const char* kernel_name() const override { return "global_avg_pool_nchwc"; }

 private:
  int n_, c_, hw_, block_;
  Isa isa_;
};

}  // namespace si
