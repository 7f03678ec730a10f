// Plan ops over the sparse (spmm) kernel family: convolutions and linear layers with pruned
// weights, computed as sparse weights x channel-major (plain NCHW) or token-major activations.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "kernels/spmm.h"
#include "runtime/plan.h"

namespace si {

// What both sparse ops apply in the spmm's store: a bias per output row (or none), an
// activation, and whether a residual input is added.
struct SparseEpilogue {
  std::vector<float> bias;
  Activation act;
  float alpha, beta;
  bool has_residual;
  // The kernel epilogue with `residual` (nullptr: none).
  Epilogue with(const float* residual) const {
    Epilogue ep;
    ep.bias = bias.empty() ? nullptr : bias.data();
    ep.act = act;
    ep.alpha = alpha;
    ep.beta = beta;
    ep.residual = residual;
    return ep;
  }
};

// What both sparse ops share: their weights, compressed (the row kernels) and, generated
// (AVX-512 only), as code generated for them (GeneratedSpmm), which the spmm then runs: faster
// on most layers at the price of its memory. The code reads its input in place where the caller
// says that pays (in_place; for convs in_place_run in sparse_ops.cc), else packed copies.
// drop_generated() gives the code up (the row kernel runs from then on);
// release_compressed() keeps it and frees the compressed nonzeros it was made from (then it
// cannot be dropped). Neither while the op runs. Kernel name: name_prefix + ["generated_"] + ISA.
class SparseOp : public Op {
 public:
  // column_classes, base_lane: for the code when it reads in place (GeneratedSpmm).
  SparseOp(std::string name_prefix, SparseEpilogue ep, SparseWeights w, bool generated, bool in_place,
           int column_classes = 1, int base_lane = -1);
  SparseOp(const SparseOp&) = delete;  // the code points at w_
  SparseOp& operator=(const SparseOp&) = delete;
  const char* kernel_name() const override { return name_.c_str(); }
  size_t weight_bytes() const override {
    return w_.bytes() + generated_bytes() + ep_.bias.size() * sizeof(float);
  }
  size_t nnz() const { return w_.nnz(); }
  size_t generated_bytes() const { return program_ ? program_->bytes() : 0; }
  size_t releasable_bytes() const { return program_ ? w_.nonzero_bytes() : 0; }
  bool generated_in_place() const { return program_ && program_->in_place(); }
  void drop_generated();
  void release_compressed();

 protected:
  // out[M x Q] = epilogue(W x in) with `residual` (nullptr: none; see spmm_f32), by the code
  // when there is some.
  void spmm(const float* in, int64_t Q, float* out, int64_t ldo, const Epilogue& ep, ThreadPool* pool,
            const SpmmInputMap* map = nullptr) const;
  SparseEpilogue ep_;

 private:
  std::string name_for(bool generated) const;
  SparseWeights w_;
  std::string prefix_;
  std::unique_ptr<GeneratedSpmm> program_;
  std::string name_;
};

// Convolution (groups 1, any kernel/stride/padding/dilation) on plain NCHW in and out.
// Each image is handled as one spmm over the output positions: the weights are compressed
// with one input offset per (c, r, s) tap, so the kernel never knows it is a convolution.
//   * 1x1, stride 1, no padding: the taps read the input planes in place (no copy).
//   * 1x1, stride > 1, no padding: the strided positions are gathered into a workspace whose
//     channel rows start on cache lines (no phase split of the whole input, no crop).
//   * stride 1 with a kernel that packs its tiles (the row kernels; generated code unless it
//     reads in place): the spmm reads each output pixel's taps from the unpadded planes through
//     an SpmmInputMap with implicit zero padding (its taps), no copy; generated code reading in
//     place gets the planes with their padding rows (pad_rows: a contiguous copy per plane) and
//     clips the taps to the rows itself.
//   * otherwise the image is zero-padded and split into stride phases (pad_phase_split) into a
//     workspace, and the spmm reads each output pixel's taps there through an SpmmInputMap
//     (rows of OW pixels, Wh apart): exactly the output pixels are computed, straight into y.
// generated: see SparseOp (the conv's output rows are the code's input rows).
// batch_major: x, y and the residual are C x N x H x W ("CNHW") instead of NCHW, so that the
// whole batch is one spmm over N x positions (long runs of Q even at 7x7) instead of N short ones.
// C x R x S (the weight columns) must be at most kSpmmMaxK (std::invalid_argument otherwise).
// inputs: x, [residual (like y)]; outputs: y, [workspace of workspace_floats()].
class SparseConvOp : public SparseOp {
 public:
  // How a KxK conv meets its zero padding: a padded (and, strided, phase-split) copy of the
  // input per call; none, the kernel clipping every tap to the planes (stride 1, a kernel that
  // packs); or a copy with only the padding rows, the kernel clipping taps to the rows
  // (stride 1, generated code reading in place). 1x1 convs have none to meet.
  enum class Padding { kCopy, kNone, kRows };
  SparseConvOp(const ConvParams& p, const float* weight, const float* bias, Activation act, float alpha,
               float beta, Isa isa, bool has_residual, bool batch_major = false, bool generated = false);
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  size_t workspace_floats() const { return ws_in_; }

 private:
  // The padding decided once (conv_padding), for the weights' offsets, the code and the runs.
  SparseConvOp(const ConvParams& p, const float* weight, const float* bias, Activation act, float alpha, float beta,
               Isa isa, bool has_residual, bool batch_major, bool generated, Padding padding);
  void subsample(const float* x, float* ws, ThreadPool* pool) const;
  ConvParams p_;
  int OH_, OW_, Hh_ = 0, Wh_ = 0;  // Hh_ x Wh_: the phase planes (KxK path)
  int nb_;     // images per spmm call: N (batch_major) or 1 (NCHW: one call per image)
  bool direct_, subsample_;
  Padding padding_;
  size_t ws_in_ = 0;
  int64_t Q_;
};

// Linear layer with constant pruned weights: y[T x N] = act(x[T x K] @ W[K x N] + bias[N]
// + residual[T x N]), T = every leading dim of x flattened (batch x tokens). The spmm family
// vectorises over its dense dimension, which must be contiguous per weight column: x is
// transposed (cache-blocked) into a workspace as [K x T], spmm computes W^T [N x K] (sparse,
// bias per row n) times it into a second workspace [N x T], and that is transposed into y,
// applying the residual and then the activation on the way (without a residual the activation
// is applied by the spmm epilogue). T == 1 needs no transposes: x and y are used in place.
// Feature-major x ([K x T]: x_feature_major) or y ([N x T], and the residual with it:
// y_feature_major) skip their transpose: consecutive sparse linear layers (a transformer's
// feed-forward up and down projections) pass the intermediate feature-major.
// inputs: x, [residual (like y)]; outputs: y, [workspace of workspace_floats()].
class SparseLinearOp : public SparseOp {
 public:
  // weight: K x N row-major (the dense GemmOp's layout). Throws std::invalid_argument when a
  // size is < 1, K > kSpmmMaxK or (K - 1) x T does not fit the kernel's int32 offsets.
  SparseLinearOp(int64_t T, const float* weight, int K, int N, const float* bias, Activation act, float alpha,
                 float beta, Isa isa, bool has_residual, bool x_feature_major = false, bool y_feature_major = false,
                 bool generated = false);
  void run(const float* const* in, float* const* out, ThreadPool* pool) const override;
  size_t workspace_floats() const {
    return T_ == 1 ? 0 : size_t(T_) * ((x_fm_ ? 0 : size_t(K_)) + (y_fm_ ? 0 : size_t(N_)));
  }

 private:
  int64_t T_;
  int K_, N_;
  bool x_fm_, y_fm_;
};

}  // namespace si
