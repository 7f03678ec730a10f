// ConvNchwc: kernel choice, weight packing, the portable instantiation of conv_impl.h, the
// reference path for grouped convs, and the one dispatch point over ISAs.
#include "kernels/conv.h"

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

namespace si {

namespace portable {

// Scalar 8-lane "vector": the same kernels as AVX2/AVX-512, compiled for baseline x86-64.
struct V {
  struct T {
    float v[8];
  };
  static constexpr int B = 8, kMaxFB = 2, kMaxP = 4, kMaxPnchw = 4, kMaxPdw = 4;
  static T zero() { return T{}; }
  static T load(const float* p) {
    T r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
  }
  static void store(float* p, const T& v) { std::memcpy(p, v.v, sizeof(v.v)); }
  static T bcast(const float* p) {
    T r;
    for (int i = 0; i < 8; ++i) r.v[i] = *p;
    return r;
  }
  static T fma(const T& a, const T& b, const T& c) {
    T r;
    for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] * b.v[i] + c.v[i];
    return r;
  }
  static T add(const T& a, const T& b) {
    T r;
    for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] + b.v[i];
    return r;
  }
  static T act(T v, Activation a, float alpha, float beta) {
    if (a != Activation::kNone)
      for (int i = 0; i < 8; ++i) v.v[i] = apply_activation(v.v[i], a, alpha, beta);
    return v;
  }
  static T mask(T v, int n) {
    for (int i = n; i < 8; ++i) v.v[i] = 0.f;
    return v;
  }
};

#include "kernels/conv_impl.h"

}  // namespace portable

namespace {

const char* kind_name(ConvKind k) {
  switch (k) {
    case ConvKind::kDirect: return "conv_direct";
    case ConvKind::k1x1: return "conv_1x1";
    case ConvKind::kDepthwise: return "conv_depthwise";
    case ConvKind::kFirstLayer: return "conv_first_layer";
    case ConvKind::kGrouped: return "conv_grouped_reference";
  }
  return "conv";
}

int max_fb_for(Isa isa) { return isa == Isa::kAvx512 ? 4 : 2; }

constexpr int kFlatMaxWidth = 16;

// Reference-quality grouped conv straight on NCHWc (any groups, any block).
void conv_grouped_reference(const ConvJob& j, const float* wt, const float* in, float* out, const float* res,
                            ThreadPool* pool) {
  const ConvParams& p = j.p;
  const int B = j.B, Cg = p.C / p.groups, Kg = p.K / p.groups;
  const size_t in_plane = size_t(p.H) * p.W * B, out_plane = size_t(j.OH) * j.OW * B;
  auto task = [&](size_t t) {
    const int n = int(t / j.Kb), kb = int(t % j.Kb);
    float* o = out + (size_t(n) * j.Kb + kb) * out_plane;
    const float* rr = res ? res + (size_t(n) * j.Kb + kb) * out_plane : nullptr;
    for (int oh = 0; oh < j.OH; ++oh)
      for (int ow = 0; ow < j.OW; ++ow)
        for (int l = 0; l < B; ++l) {
          const size_t oi = (size_t(oh) * j.OW + ow) * B + l;
          const int k = kb * B + l;
          if (k >= p.K) {
            o[oi] = 0.f;
            continue;
          }
          const int g = k / Kg;
          float acc = 0.f;
          for (int cg = 0; cg < Cg; ++cg) {
            const int c = g * Cg + cg;
            const float* ic = in + (size_t(n) * j.Cb + c / B) * in_plane + c % B;
            for (int r = 0; r < p.R; ++r) {
              const int ih = oh * p.stride_h - p.pad_top + r * p.dil_h;
              if (ih < 0 || ih >= p.H) continue;
              for (int s = 0; s < p.S; ++s) {
                const int iw = ow * p.stride_w - p.pad_left + s * p.dil_w;
                if (iw < 0 || iw >= p.W) continue;
                acc += ic[(size_t(ih) * p.W + iw) * B] * wt[((size_t(k) * Cg + cg) * p.R + r) * p.S + s];
              }
            }
          }
          acc += j.bias[k];
          if (rr) acc += rr[oi];
          o[oi] = apply_activation(acc, j.act, j.alpha, j.beta);
        }
  };
  const size_t n = size_t(p.N) * j.Kb;
  if (pool && pool->num_threads() > 1 && n > 1) {
    pool->parallel_for(n, task);
  } else {
    for (size_t i = 0; i < n; ++i) task(i);
  }
}

}  // namespace

ConvNchwc::ConvNchwc(const ConvParams& p, const float* weight, const float* bias, Activation act, float alpha,
                     float beta, Isa isa)
    : orig_(p), isa_(isa) {
  if (p.N < 1 || p.C < 1 || p.H < 1 || p.W < 1 || p.K < 1 || p.R < 1 || p.S < 1)
    throw std::invalid_argument("conv: N, C, H, W, K, R, S must be >= 1");
  if (p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1)
    throw std::invalid_argument("conv: strides and dilations must be >= 1");
  if (p.pad_top < 0 || p.pad_left < 0 || p.pad_bottom < 0 || p.pad_right < 0)
    throw std::invalid_argument("conv: pads must be >= 0");
  if (p.groups < 1 || p.C % p.groups || p.K % p.groups)
    throw std::invalid_argument("conv: groups must divide both C and K");
  if (p.OH() < 1 || p.OW() < 1) throw std::invalid_argument("conv: the kernel window does not fit the padded input");
  if (int(isa) > int(best_isa()))
    throw std::invalid_argument(std::string("conv: ISA ") + isa_name(isa) + " is not supported by this CPU");
  if (!weight) throw std::invalid_argument("conv: weight is null");

  ConvJob& j = job_;
  j.p = p;
  j.B = nchwc_block(isa);
  const int B = j.B;
  j.Cb = (p.C + B - 1) / B;
  j.Kb = (p.K + B - 1) / B;
  j.OH = p.OH();
  j.OW = p.OW();
  j.max_fb = max_fb_for(isa);
  j.act = act;
  j.alpha = alpha;
  j.beta = beta;
  if (p.groups == 1) {
    if (p.C <= 4) {
      j.kind = ConvKind::kFirstLayer;
    } else if (p.R == 1 && p.S == 1 && p.pad_top == 0 && p.pad_left == 0 && p.pad_bottom == 0 &&
               p.pad_right == 0) {
      j.kind = ConvKind::k1x1;
      // The image is one long row of pixels. A strided 1x1 first gathers the pixels it uses
      // (a quarter of them at stride 2), so that its kernel also reads contiguous tiles.
      j.subsample = p.stride_h > 1 || p.stride_w > 1;
      j.p.H = 1;
      j.p.W = j.OH * j.OW;
      j.p.stride_h = j.p.stride_w = 1;
      j.OW = j.OH * j.OW;
      j.OH = 1;
    } else {
      j.kind = ConvKind::kDirect;
      // Small padded maps (7x7, 14x14): pay one copy of the input into a zero-padded buffer and
      // walk the outputs flat (see flat_row): fewer, fuller register tiles than rows of 7 or 14
      // pixels cut into tiles, and a split over columns that suits them (measured 5-13% faster on
      // 2 threads; on 28x28 the row tiles with edge tiles were 10-16% faster).
      const bool padded = p.pad_top || p.pad_left || p.pad_bottom || p.pad_right;
      if (padded && p.stride_h == 1 && p.stride_w == 1 && j.OW <= kFlatMaxWidth) {
        j.flat_wp = p.W + p.pad_left + p.pad_right;
        j.p.H = p.H + p.pad_top + p.pad_bottom;
        j.p.W = j.flat_wp;
        j.p.pad_top = j.p.pad_left = j.p.pad_bottom = j.p.pad_right = 0;
      }
    }
  } else if (p.groups == p.C && p.groups == p.K) {
    j.kind = ConvKind::kDepthwise;
  } else {
    j.kind = ConvKind::kGrouped;
  }
  name_ = std::string(kind_name(j.kind)) + (j.kind == ConvKind::kFirstLayer ? "_nchw_" : "_nchw" + std::to_string(B) + "c_") +
          isa_name(isa);

  bias_.assign(size_t(j.Kb) * B, 0.f);
  if (bias) std::memcpy(bias_.data(), bias, sizeof(float) * p.K);

  const int R = p.R, S = p.S, C = p.C, K = p.K, Cg = C / p.groups;
  auto wat = [&](int k, int c, int r, int s) { return weight[((size_t(k) * Cg + c) * R + r) * S + s]; };
  switch (j.kind) {
    case ConvKind::kDirect:
    case ConvKind::k1x1:
    case ConvKind::kFirstLayer: {
      // group of fb blocks at kb0: [c][r][s][ci][f][B], c over Cb blocks (ci: B lanes) or C channels (ci: 1)
      const bool nchw = j.kind == ConvKind::kFirstLayer;
      const int nc = nchw ? C : j.Cb, CI = nchw ? 1 : B;
      const size_t w_block = size_t(nc) * R * S * CI * B;
      wpack_.assign(w_block * j.Kb, 0.f);
      const int G = conv_num_fb_groups(j.Kb, j.max_fb);
      for (int g = 0; g < G; ++g) {
        int kb0, fb;
        conv_fb_group(j.Kb, j.max_fb, g, kb0, fb);
        float* wg = wpack_.data() + kb0 * w_block;
        for (int c = 0; c < nc; ++c)
          for (int r = 0; r < R; ++r)
            for (int s = 0; s < S; ++s)
              for (int ci = 0; ci < CI; ++ci)
                for (int f = 0; f < fb; ++f)
                  for (int l = 0; l < B; ++l) {
                    const int k = (kb0 + f) * B + l, cc = nchw ? c : c * B + ci;
                    if (k < K && cc < C)
                      wg[((((size_t(c) * R + r) * S + s) * CI + ci) * fb + f) * B + l] = wat(k, cc, r, s);
                  }
      }
      break;
    }
    case ConvKind::kDepthwise:
      wpack_.assign(size_t(j.Cb) * R * S * B, 0.f);
      for (int k = 0; k < K; ++k)
        for (int r = 0; r < R; ++r)
          for (int s = 0; s < S; ++s) wpack_[((size_t(k / B) * R + r) * S + s) * B + k % B] = wat(k, 0, r, s);
      break;
    case ConvKind::kGrouped:
      wpack_.assign(weight, weight + size_t(K) * Cg * R * S);
      break;
  }
  j.w = wpack_.data();
  j.bias = bias_.data();
}

namespace {

// in: NCHWc (N, Cb, H, W, B) -> dst (N, Cb, OH, OW, B), the pixels a strided 1x1 conv reads.
void gather_strided(const ConvParams& p, int Cb, int B, int OH, int OW, const float* in, float* dst, ThreadPool* pool) {
  const size_t planes = size_t(p.N) * Cb;
  auto task = [&](size_t t) {
    const float* src = in + t * p.H * p.W * B;
    float* d = dst + t * OH * OW * B;
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow)
        std::memcpy(d + (size_t(oh) * OW + ow) * B, src + (size_t(oh) * p.stride_h * p.W + size_t(ow) * p.stride_w) * B,
                    sizeof(float) * B);
  };
  if (pool && pool->num_threads() > 1 && planes > 1) {
    pool->parallel_for(planes, task);
  } else {
    for (size_t t = 0; t < planes; ++t) task(t);
  }
}

// in: NCHWc (N, Cb, H, W, B) -> dst (N, Cb, H + pt + pb, W + pl + pr, B) with zero borders.
void pad_copy(const ConvParams& p, int Cb, int B, const float* in, float* dst, ThreadPool* pool) {
  const int Hp = p.H + p.pad_top + p.pad_bottom, Wp = p.W + p.pad_left + p.pad_right;
  const size_t planes = size_t(p.N) * Cb;
  auto task = [&](size_t t) {
    const float* src = in + t * p.H * p.W * B;
    float* d = dst + t * Hp * Wp * B;
    std::memset(d, 0, sizeof(float) * size_t(p.pad_top) * Wp * B);
    for (int h = 0; h < p.H; ++h) {
      float* row = d + (size_t(p.pad_top + h) * Wp) * B;
      std::memset(row, 0, sizeof(float) * size_t(p.pad_left) * B);
      std::memcpy(row + size_t(p.pad_left) * B, src + size_t(h) * p.W * B, sizeof(float) * size_t(p.W) * B);
      std::memset(row + size_t(p.pad_left + p.W) * B, 0, sizeof(float) * size_t(p.pad_right) * B);
    }
    std::memset(d + size_t(p.pad_top + p.H) * Wp * B, 0, sizeof(float) * size_t(p.pad_bottom) * Wp * B);
  };
  if (pool && pool->num_threads() > 1 && planes > 1) {
    pool->parallel_for(planes, task);
  } else {
    for (size_t t = 0; t < planes; ++t) task(t);
  }
}

}  // namespace

void ConvNchwc::run(const float* in, float* out, const float* residual, ThreadPool* pool) const {
  const ConvJob& j = job_;
  if (j.kind == ConvKind::kGrouped) return conv_grouped_reference(j, j.w, in, out, residual, pool);
  if (j.subsample || j.flat_wp) {
    // One scratch per calling thread, grown once: a run's convs execute one after another.
    thread_local std::vector<float> scratch;
    const size_t n = size_t(orig_.N) * j.Cb * j.p.H * j.p.W * j.B;
    if (scratch.size() < n) scratch.resize(n);
    if (j.subsample) {
      gather_strided(orig_, j.Cb, j.B, orig_.OH(), orig_.OW(), in, scratch.data(), pool);
    } else {
      pad_copy(orig_, j.Cb, j.B, in, scratch.data(), pool);
    }
    in = scratch.data();
  }
  const bool dw = j.kind == ConvKind::kDepthwise;
  switch (isa_) {
    case Isa::kAvx512:
      return dw ? avx512::conv_depthwise(j, in, out, residual, pool) : avx512::conv_direct(j, in, out, residual, pool);
    case Isa::kAvx2:
      return dw ? avx2::conv_depthwise(j, in, out, residual, pool) : avx2::conv_direct(j, in, out, residual, pool);
    case Isa::kPortable:
      return dw ? portable::conv_depthwise(j, in, out, residual, pool)
                : portable::conv_direct(j, in, out, residual, pool);
  }
}

}  // namespace si
