// f32 convolution in the blocked NCHWc layout (B = nchwc_block(isa) channels per block).
// One class chooses among the family's kernels at construction and packs weights for it:
//   direct KxK (groups 1), 1x1 (GEMM-like), depthwise, first layer (plain NCHW input, C <= 4),
//   and a reference-quality path for other grouped convs.
// Every kernel exists for portable, AVX2 and AVX-512 (conv_impl.h is the one source of the
// vectorised kernels, instantiated per ISA); bias, residual and activation are fused in the store.
#pragma once
#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "kernels/epilogue.h"
#include "kernels/reorder.h"
#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace si {

struct ConvParams {
  int N, C, H, W;
  int K, R, S;
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int dil_h = 1, dil_w = 1;
  int groups = 1;
  int OH() const { return (H + pad_top + pad_bottom - dil_h * (R - 1) - 1) / stride_h + 1; }
  int OW() const { return (W + pad_left + pad_right - dil_w * (S - 1) - 1) / stride_w + 1; }
};

enum class ConvKind { kDirect, k1x1, kDepthwise, kFirstLayer, kGrouped };

// Everything a kernel needs, plain data shared between conv.cc and the ISA files.
struct ConvJob {
  ConvParams p;
  ConvKind kind;
  int B, Cb, Kb, OH, OW;
  int max_fb;                 // output-channel blocks per register tile (direct, first layer)
  bool subsample = false;     // strided 1x1: the kernel reads a gathered copy of the used pixels
  int flat_wp = 0;            // direct conv on a zero-padded copy this wide, outputs walked flat (conv_impl.h)
  const float* w = nullptr;   // packed weights (layout depends on kind, see conv.cc)
  const float* bias = nullptr;  // Kb * B values, padded lanes 0
  Activation act = Activation::kNone;
  float alpha = 0.f, beta = 0.f;
};

class ConvNchwc {
 public:
  // weight OIHW (K x C/groups x R x S), packed once for `isa`; bias may be nullptr (then zero).
  // Throws std::invalid_argument on inconsistent parameters or an ISA this CPU lacks.
  ConvNchwc(const ConvParams& p, const float* weight, const float* bias, Activation act, float alpha,
            float beta, Isa isa);
  bool input_is_nchw() const { return job_.kind == ConvKind::kFirstLayer; }
  // in: NCHWc (or NCHW when input_is_nchw()), out: NCHWc, residual: NCHWc like out or nullptr.
  void run(const float* in, float* out, const float* residual, ThreadPool* pool) const;
  size_t weight_bytes() const { return (wpack_.size() + bias_.size()) * sizeof(float); }
  Isa isa() const { return isa_; }
  const char* kernel_name() const { return name_.c_str(); }
  const ConvParams& params() const { return orig_; }
  int block() const { return job_.B; }

 private:
  ConvParams orig_;  // as given (job_.p may be a flattened view, e.g. 1x1 as one row of pixels)
  ConvJob job_;
  Isa isa_;
  std::string name_;
  std::vector<float> wpack_, bias_;
};

// Output-channel blocks are processed in register tiles of up to max_fb blocks: the Kb blocks are
// split into conv_num_fb_groups() groups of near-equal size; packing and kernels share this split.
inline int conv_num_fb_groups(int Kb, int max_fb) { return (Kb + max_fb - 1) / max_fb; }
inline void conv_fb_group(int Kb, int max_fb, int g, int& kb0, int& fb) {
  const int G = conv_num_fb_groups(Kb, max_fb), base = Kb / G, extra = Kb % G;
  kb0 = g * base + (g < extra ? g : extra);
  fb = base + (g < extra ? 1 : 0);
}

// Per-ISA kernel entry points (conv_impl.h instantiated in avx512/, avx2/ and conv.cc).
#define SI_CONV_DECLARE(ns)                                                                    \
  namespace ns {                                                                               \
  void conv_direct(const ConvJob& j, const float* in, float* out, const float* res, ThreadPool* pool); \
  void conv_depthwise(const ConvJob& j, const float* in, float* out, const float* res, ThreadPool* pool); \
  }
SI_CONV_DECLARE(avx512)
SI_CONV_DECLARE(avx2)
SI_CONV_DECLARE(portable)
#undef SI_CONV_DECLARE

}  // namespace si
