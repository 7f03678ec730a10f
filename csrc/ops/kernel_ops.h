// Plan ops over the conv (NCHWc), GEMM and layout kernel families.
#pragma once
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/conv.h"
#include "kernels/gemm.h"
#include "kernels/norm.h"
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

// Batched MatMul of two activations, NumPy semantics: a [..., M, K] x b [..., K, N] (b given
// as [..., N, K] when trans_b) with broadcast batch dims; output [batch..., M, N]. Shapes have
// rank >= 2 (the compiler promotes 1-D operands) and equal rank (left-padded with 1s).
class MatMulOp : public Op {
 public:
  MatMulOp(const std::vector<int64_t>& a_shape, const std::vector<int64_t>& b_shape, bool trans_b, Isa isa)
      : trans_b_(trans_b), isa_(isa) {
    const size_t r = a_shape.size();
    if (r < 2 || b_shape.size() != r) throw std::invalid_argument("MatMulOp: operands need equal rank >= 2");
    M_ = int(a_shape[r - 2]);
    K_ = int(a_shape[r - 1]);
    N_ = int(trans_b ? b_shape[r - 2] : b_shape[r - 1]);
    if ((trans_b ? b_shape[r - 1] : b_shape[r - 2]) != K_) throw std::invalid_argument("MatMulOp: inner dims differ");
    // Offsets of every output batch entry in a and b (broadcast dims repeat an offset).
    std::vector<int64_t> out_batch;
    for (size_t d = 0; d + 2 < r; ++d) {
      if (a_shape[d] != b_shape[d] && a_shape[d] != 1 && b_shape[d] != 1)
        throw std::invalid_argument("MatMulOp: batch dims do not broadcast");
      out_batch.push_back(std::max(a_shape[d], b_shape[d]));
    }
    int64_t batch = 1;
    for (int64_t d : out_batch) batch *= d;
    a_off_.assign(size_t(batch), 0);
    b_off_.assign(size_t(batch), 0);
    const int64_t a_mat = int64_t(M_) * K_, b_mat = int64_t(K_) * N_;
    for (int64_t i = 0; i < batch; ++i) {
      int64_t rem = i, sa = a_mat, sb = b_mat;
      for (size_t d = out_batch.size(); d-- > 0;) {
        const int64_t idx = rem % out_batch[d];
        rem /= out_batch[d];
        if (a_shape[d] != 1) a_off_[size_t(i)] += idx * sa;
        if (b_shape[d] != 1) b_off_[size_t(i)] += idx * sb;
        sa *= a_shape[d];
        sb *= b_shape[d];
      }
    }
    name_ = std::string("sgemm_batched_") + isa_name(isa);
  }
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    sgemm_batched(int(a_off_.size()), M_, N_, K_, in[0], a_off_.data(), K_, in[1], b_off_.data(), trans_b_ ? K_ : N_,
                  trans_b_, out[0], N_, Epilogue(), pool, isa_);
  }
  const char* kernel_name() const override { return name_.c_str(); }

 private:
  int M_ = 0, N_ = 0, K_ = 0;
  bool trans_b_;
  Isa isa_;
  std::vector<int64_t> a_off_, b_off_;
  std::string name_;
};

// inputs: x [rows, n], gamma [n], [beta [n]]; outputs: y [rows, n], [mean [rows], rstd [rows]].
class LayerNormOp : public Op {
 public:
  LayerNormOp(int64_t rows, int64_t n, float eps, bool has_beta, bool stats, Isa isa)
      : rows_(rows), n_(n), eps_(eps), has_beta_(has_beta), stats_(stats), isa_(isa) {
    name_ = std::string("layer_norm_") + (isa == Isa::kPortable ? "portable" : "avx2");
  }
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    layer_norm(in[0], in[1], has_beta_ ? in[2] : nullptr, out[0], rows_, n_, eps_, isa_, pool,
               stats_ ? out[1] : nullptr, stats_ ? out[2] : nullptr);
  }
  const char* kernel_name() const override { return name_.c_str(); }

 private:
  int64_t rows_, n_;
  float eps_;
  bool has_beta_, stats_;
  Isa isa_;
  std::string name_;
};

// inputs: q, k, v, [mask]; output: out (layouts given by the strides in AttentionParams).
class AttentionOp : public Op {
 public:
  AttentionOp(const AttentionParams& p, bool has_mask, Isa isa) : p_(p), has_mask_(has_mask), isa_(isa) {
    name_ = std::string("attention_") + (isa == Isa::kPortable ? "portable" : isa_name(isa));
  }
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override {
    attention(p_, in[0], in[1], in[2], has_mask_ ? in[3] : nullptr, out[0], pool, isa_);
  }
  const char* kernel_name() const override { return name_.c_str(); }

 private:
  AttentionParams p_;
  bool has_mask_;
  Isa isa_;
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
  const char* kernel_name() const override {
    if (block_ == 1) return kind_ == PoolKind::kMax ? "max_pool_nchw" : "avg_pool_nchw";
    return kind_ == PoolKind::kMax ? "max_pool_nchwc" : "avg_pool_nchwc";
  }

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
