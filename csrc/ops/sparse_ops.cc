#include "ops/sparse_ops.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "kernels/reorder.h"

namespace si {
namespace {

bool is_direct(const ConvParams& p) {
  return p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 && p.pad_left == 0 &&
         p.pad_bottom == 0 && p.pad_right == 0;
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// One input offset per weight column (c, r, s) in OIHW order, relative to the image's planes
// (direct) or to the padded, phase-split workspace.
std::vector<int64_t> tap_offsets(const ConvParams& p) {
  const bool direct = is_direct(p);
  std::vector<int64_t> off(size_t(p.C) * p.R * p.S);
  const int Hh = direct ? p.H : ceil_div(p.H + p.pad_top + p.pad_bottom, p.stride_h);
  const int Wh = direct ? p.W : ceil_div(p.W + p.pad_left + p.pad_right, p.stride_w);
  const int64_t plane = int64_t(Hh) * Wh, phase = plane * p.C;
  for (int c = 0; c < p.C; ++c)
    for (int r = 0; r < p.R; ++r)
      for (int s = 0; s < p.S; ++s) {
        const int rr = r * p.dil_h, ss = s * p.dil_w;
        const int ph = rr % p.stride_h, pw = ss % p.stride_w;
        off[(size_t(c) * p.R + r) * p.S + s] =
            (int64_t(ph) * p.stride_w + pw) * phase + c * plane + int64_t(rr / p.stride_h) * Wh + ss / p.stride_w;
      }
  return off;
}

const ConvParams& checked(const ConvParams& p) {
  if (p.groups != 1) throw std::invalid_argument("SparseConvOp: only groups == 1 convolutions");
  if (p.N < 1 || p.C < 1 || p.K < 1 || p.H < 1 || p.W < 1 || p.R < 1 || p.S < 1 || p.stride_h < 1 ||
      p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1 || p.pad_top < 0 || p.pad_left < 0 || p.pad_bottom < 0 ||
      p.pad_right < 0)
    throw std::invalid_argument("SparseConvOp: sizes, strides and dilations must be positive, pads >= 0");
  if (p.OH() < 1 || p.OW() < 1) throw std::invalid_argument("SparseConvOp: the kernel is larger than the padded input");
  return p;
}

}  // namespace

SparseConvOp::SparseConvOp(const ConvParams& p, const float* weight, const float* bias, Activation act, float alpha,
                           float beta, Isa isa, bool has_residual)
    : p_(checked(p)),
      OH_(p.OH()),
      OW_(p.OW()),
      direct_(is_direct(p)),
      bias_(bias ? std::vector<float>(bias, bias + p.K) : std::vector<float>()),
      act_(act),
      alpha_(alpha),
      beta_(beta),
      has_residual_(has_residual),
      w_(weight, p.K, p.C * p.R * p.S, tap_offsets(p).data(), isa) {
  if (direct_) {
    Hh_ = p.H;
    Wh_ = p.W;
    Q_ = int64_t(OH_) * OW_;
  } else {
    Hh_ = ceil_div(p.H + p.pad_top + p.pad_bottom, p.stride_h);
    Wh_ = ceil_div(p.W + p.pad_left + p.pad_right, p.stride_w);
    Q_ = int64_t(OH_) * Wh_;
    ws_phase_ = size_t(p.stride_h) * p.stride_w * p.C * size_t(Hh_) * Wh_;
    // The discarded columns of the last row read up to (S-1)*dil/sw positions past the last
    // phase plane: keep that slack inside the workspace (zeroed).
    ws_in_ = ws_phase_ + size_t(Wh_) + size_t(p.S) * p.dil_w;
    ws_out_ = Wh_ == OW_ ? 0 : size_t(p.K) * size_t(Q_);
  }
  name_ = std::string("spmm_conv") + (direct_ ? "1x1" : std::to_string(p.R) + "x" + std::to_string(p.S)) + "_" +
          isa_name(isa);
}

void SparseConvOp::run(const float* const* in, float* const* out, ThreadPool* pool) const {
  const size_t in_image = size_t(p_.C) * p_.H * p_.W, out_image = size_t(p_.K) * OH_ * OW_;
  float* ws = direct_ ? nullptr : out[1];
  if (ws) std::fill(ws + ws_phase_, ws + ws_in_, 0.f);
  for (int n = 0; n < p_.N; ++n) {
    const float* x = in[0] + n * in_image;
    float* y = out[0] + n * out_image;
    const float* res = has_residual_ ? in[1] + n * out_image : nullptr;
    Epilogue ep;
    ep.bias = bias_.empty() ? nullptr : bias_.data();
    ep.act = act_;
    ep.alpha = alpha_;
    ep.beta = beta_;
    if (direct_) {
      ep.residual = res;
      spmm_f32(w_, x, Q_, y, Q_, ep, pool);
      continue;
    }
    pad_phase_split(x, ws, p_.C, p_.H, p_.W, p_.pad_top, p_.pad_left, p_.stride_h, p_.stride_w, Hh_, Wh_, pool);
    if (ws_out_ == 0) {  // Wh == OW: the spmm rows are exactly the output rows
      ep.residual = res;
      spmm_f32(w_, ws, Q_, y, Q_, ep, pool);
      continue;
    }
    float* tmp = ws + ws_in_;
    if (res) ep.act = Activation::kNone;  // residual and activation applied by the crop
    spmm_f32(w_, ws, Q_, tmp, Q_, ep, pool);
    const int OH = OH_, OW = OW_, Wh = Wh_;
    const Activation act = res ? act_ : Activation::kNone;
    const float alpha = alpha_, beta = beta_;
    auto crop = [&](size_t k) {
      const float* t = tmp + k * size_t(Q_);
      float* yk = y + k * size_t(OH) * OW;
      const float* rk = res ? res + k * size_t(OH) * OW : nullptr;
      for (int oh = 0; oh < OH; ++oh) {
        const float* trow = t + size_t(oh) * Wh;
        float* yrow = yk + size_t(oh) * OW;
        if (!rk) {
          std::memcpy(yrow, trow, sizeof(float) * OW);
        } else {
          const float* rrow = rk + size_t(oh) * OW;
          for (int ow = 0; ow < OW; ++ow) yrow[ow] = apply_activation(trow[ow] + rrow[ow], act, alpha, beta);
        }
      }
    };
    if (pool && pool->num_threads() > 1 && p_.K > 1) {
      pool->parallel_for(size_t(p_.K), crop);
    } else {
      for (size_t k = 0; k < size_t(p_.K); ++k) crop(k);
    }
  }
}

}  // namespace si
