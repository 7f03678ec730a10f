#include "ops/sparse_ops.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/reorder.h"

namespace si {
namespace {

bool is_direct(const ConvParams& p) {
  return p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 && p.pad_left == 0 &&
         p.pad_bottom == 0 && p.pad_right == 0;
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// A 1x1 conv with stride > 1 and no padding reads one input position in stride_h x stride_w:
// those are gathered (subsample) instead of phase-splitting the whole input.
bool is_subsample(const ConvParams& p) {
  return p.R == 1 && p.S == 1 && (p.stride_h > 1 || p.stride_w > 1) && p.pad_top == 0 && p.pad_left == 0 &&
         p.pad_bottom == 0 && p.pad_right == 0;
}

// Floats per channel of the subsample workspace: the nb output planes of a channel, rounded
// up to a vector multiple so that every channel starts on a cache line (no packing needed).
int64_t subsample_stride(const ConvParams& p, int nb) {
  const int64_t q = int64_t(nb) * p.OH() * p.OW();
  return (q + 15) / 16 * 16;
}

// The positions a conv's in-place vectors run over (DirectVectors) and whether its generated
// code then reads its input in place rather than a packed copy per tile (spmm.h, GeneratedSpmm):
// where that measured faster on Zen 4 (resnet50 and VGG-16 layers, one core, and whole models at
// batch 64 on 2 cores). The run: a 1x1 conv's planes; a stride-1 KxK conv as wide as its input
// (its planes with their padding rows: rows follow each other, the vectors run over whole
// images); else a row of the map. At most 128 output channels, so that few row blocks share each
// tile's copy (1.1-1.35x; with 512-1024, 0.8x), and up to 512 for the same-size KxK convs, whose
// copy packs every tap (vgg16-pruned90 batch 64 on 2 cores: 256 channels in place +2.1%, 512
// +2.4% more, +4.2% in all, resnet50-pruned90 +2.2%; before their vectors ran over whole images,
// 0.96-0.98x and 0.83-0.90x per layer); and runs that fill at least 7/8 of their vectors' lanes
// (7-pixel rows filled 7 of 16: 0.75x; 7x7 images fill 49 of 64).
struct InPlaceRun {
  int64_t len;  // positions
  int max_m;    // output channels
  bool pays(int M) const { return M <= max_m && len > 0 && len * 8 >= (len + 15) / 16 * 16 * 7; }
};

InPlaceRun in_place_run(const ConvParams& p, bool batch_major, bool with_padding_rows) {
  if (is_direct(p) || is_subsample(p)) return {int64_t(batch_major ? p.N : 1) * p.OH() * p.OW(), 128};
  if (with_padding_rows && p.OW() == p.W) return {int64_t(p.OH()) * p.OW(), 512};
  return {p.OW(), 128};
}

// How a KxK conv's kernel meets its zero padding (SparseConvOp::Padding): a stride-1 conv over
// more than one output pixel needs no padded copy per call when its kernel packs each tile
// anyway (the row kernels on mapped inputs, generated code not reading in place: each tap's
// runs are clipped to the plane while packing, SpmmInputMap's taps), and only the padding rows
// when its generated code reads in place (which clips taps to the rows by lane masks per tap
// column, not to the planes). The copy was ~3% of resnet50-pruned90/-pruned95 at batch 64 on 2
// Zen 4 cores for each kind of kernel (skipping it outright, exploratory A/B).
SparseConvOp::Padding conv_padding(const ConvParams& p, bool batch_major, bool generated) {
  const int64_t positions = int64_t(batch_major ? p.N : 1) * p.OH() * p.OW();
  if (is_direct(p) || is_subsample(p) || p.stride_h != 1 || p.stride_w != 1 || positions <= 1)
    return SparseConvOp::Padding::kCopy;
  const bool rows = p.S <= kSpmmMaxColumnClasses;  // taps clipped to the rows by the lane masks
  if (!(generated && in_place_run(p, batch_major, rows).pays(p.K))) return SparseConvOp::Padding::kNone;
  return rows ? SparseConvOp::Padding::kRows : SparseConvOp::Padding::kCopy;
}

// Whether a conv's generated code reads in place (see in_place_run), given its padding.
bool conv_in_place(const ConvParams& p, bool batch_major, SparseConvOp::Padding padding) {
  return padding != SparseConvOp::Padding::kNone &&
         in_place_run(p, batch_major, padding == SparseConvOp::Padding::kRows).pays(p.K);
}

// The padded planes (kRows) start on the first line at least a line into the workspace
// (kRowsGuard floats; the workspace has three more lines than the planes): generated code
// reading them in place from whole lines (GeneratedSpmm's base_lane) reads up to a line before
// and after them.
constexpr int64_t kRowsGuard = 16;
float* rows_planes(float* ws) {
  float* p = ws + kRowsGuard;
  return p + (kRowsGuard - reinterpret_cast<uintptr_t>(p) / sizeof(float) % kRowsGuard) % kRowsGuard;
}

// Where the vectors of a same-size conv reading its padded planes in place start in a line: the
// lane of the window's corner, pad_left floats before the planes; -1 where a call's images or the
// vectors' runs are not 16 floats apart (GeneratedSpmm then loads across lines).
int rows_base_lane(const ConvParams& p, bool batch_major, SparseConvOp::Padding padding) {
  if (padding != SparseConvOp::Padding::kRows || p.OW() != p.W) return -1;
  const int64_t image = int64_t(p.H + p.pad_top + p.pad_bottom) * p.W;
  if (batch_major && p.N > 1 && image % 16 != 0) return -1;
  return (16 - p.pad_left % 16) % 16;
}

// One input offset per weight column (c, r, s) in OIHW order, relative to the planes of one
// call's nb images (direct) or to the padded, phase-split workspace. Channel c's nb planes
// are consecutive in both layouts (CNHW; NCHW has nb = 1).
std::vector<int64_t> tap_offsets(const ConvParams& p, int nb, SparseConvOp::Padding padding) {
  if (padding != SparseConvOp::Padding::kCopy) {
    // Planes of H rows (kRows: with the padding rows), offsets from the padded window's corner:
    // pad_top rows (kNone) and pad_left columns before them.
    std::vector<int64_t> off(size_t(p.C) * p.R * p.S);
    const int64_t rows = padding == SparseConvOp::Padding::kRows ? p.H + p.pad_top + p.pad_bottom : p.H;
    const int64_t plane = rows * p.W * nb;
    for (int c = 0; c < p.C; ++c)
      for (int r = 0; r < p.R; ++r)
        for (int s = 0; s < p.S; ++s)
          off[(size_t(c) * p.R + r) * p.S + s] = c * plane + int64_t(r) * p.dil_h * p.W + int64_t(s) * p.dil_w;
    return off;
  }
  if (is_subsample(p)) {
    std::vector<int64_t> off(size_t(p.C));
    for (int c = 0; c < p.C; ++c) off[c] = c * subsample_stride(p, nb);
    return off;
  }
  const bool direct = is_direct(p);
  std::vector<int64_t> off(size_t(p.C) * p.R * p.S);
  const int Hh = direct ? p.H : ceil_div(p.H + p.pad_top + p.pad_bottom, p.stride_h);
  const int Wh = direct ? p.W : ceil_div(p.W + p.pad_left + p.pad_right, p.stride_w);
  const int64_t plane = int64_t(Hh) * Wh * nb, phase = plane * p.C;
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
  const int64_t cols = int64_t(p.C) * p.R * p.S;
  if (cols > kSpmmMaxK)
    throw std::invalid_argument("SparseConvOp: C x R x S = " + std::to_string(cols) +
                                " weight columns exceed the spmm kernel's limit (expected at most " +
                                std::to_string(kSpmmMaxK) + "); keep this conv dense");
  return p;
}


// ---- linear layers: cache-blocked 2-D transposes around the spmm ----

constexpr int64_t kTile = 32;               // floats per side of a transpose tile (4 KiB)
constexpr int64_t kSerialFloats = 1 << 14;  // smaller transposes stay on the caller's thread

// Calls f(r0, r1, c0, c1) for every kTile x kTile tile of a rows x cols matrix; in parallel
// (contiguous runs of tiles per task, ~4 tasks per thread) when the matrix is large enough.
template <class F>
void for_each_tile(int64_t rows, int64_t cols, ThreadPool* pool, const F& f) {
  const int64_t rt = (rows + kTile - 1) / kTile, ct = (cols + kTile - 1) / kTile, tiles = rt * ct;
  auto run = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r0 = (i / ct) * kTile, c0 = (i % ct) * kTile;
      f(r0, std::min(rows, r0 + kTile), c0, std::min(cols, c0 + kTile));
    }
  };
  const int threads = pool ? pool->num_threads() : 1;
  if (threads <= 1 || rows * cols < kSerialFloats || tiles < 2) {
    run(0, tiles);
    return;
  }
  const int64_t tasks = std::min<int64_t>(tiles, 4 * threads);
  pool->parallel_for(size_t(tasks), [&](size_t t) { run(int64_t(t) * tiles / tasks, (int64_t(t) + 1) * tiles / tasks); });
}

// dst[c * ld_dst + r] = src[r * ld_src + c] for r in [r0, r1), c in [c0, c1): 4 x 4 blocks with
// SSE (baseline x86-64: no dispatch needed; measured: the scalar loops were ~15 of bert_base-
// pruned90's 85 ms), the edges scalar.
void transpose_block(const float* src, int64_t ld_src, float* dst, int64_t ld_dst, int64_t r0, int64_t r1,
                     int64_t c0, int64_t c1) {
  int64_t r = r0;
#if defined(__SSE2__)
  for (; r + 4 <= r1; r += 4) {
    int64_t c = c0;
    for (; c + 4 <= c1; c += 4) {
      __m128 a = _mm_loadu_ps(src + r * ld_src + c), b = _mm_loadu_ps(src + (r + 1) * ld_src + c);
      __m128 d = _mm_loadu_ps(src + (r + 2) * ld_src + c), e = _mm_loadu_ps(src + (r + 3) * ld_src + c);
      _MM_TRANSPOSE4_PS(a, b, d, e);
      _mm_storeu_ps(dst + c * ld_dst + r, a);
      _mm_storeu_ps(dst + (c + 1) * ld_dst + r, b);
      _mm_storeu_ps(dst + (c + 2) * ld_dst + r, d);
      _mm_storeu_ps(dst + (c + 3) * ld_dst + r, e);
    }
    for (; c < c1; ++c)
      for (int64_t i = r; i < r + 4; ++i) dst[c * ld_dst + i] = src[i * ld_src + c];
  }
#endif
  for (; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) dst[c * ld_dst + r] = src[r * ld_src + c];
}

// dst[c * rows + r] = src[r * cols + c]: a row-major rows x cols matrix into cols x rows.
void transpose_2d(const float* src, int64_t rows, int64_t cols, float* dst, ThreadPool* pool) {
  for_each_tile(rows, cols, pool, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    transpose_block(src, cols, dst, rows, r0, r1, c0, c1);
  });
}

// y[t * N + n] = act(src[n * T + t] + res[t * N + n]): the spmm's [N x T] result back into
// token-major [T x N], adding the residual (which may be y itself) before the activation.
void transpose_add_act(const float* src, int64_t N, int64_t T, const float* res, float* y, Activation act,
                       float alpha, float beta, ThreadPool* pool) {
  for_each_tile(T, N, pool, [&](int64_t t0, int64_t t1, int64_t n0, int64_t n1) {
    // Transposed into a tile on the stack first (the residual may be y itself), then added.
    float tile[kTile * kTile];
    const int64_t w = n1 - n0;
    transpose_block(src + n0 * T + t0, T, tile, w, 0, n1 - n0, 0, t1 - t0);
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t n = n0; n < n1; ++n)
        y[t * N + n] = apply_activation(tile[(t - t0) * w + (n - n0)] + res[t * N + n], act, alpha, beta);
  });
}

// W [K x N] (row-major, as the dense GemmOp takes it) compressed as W^T [N x K] whose column k
// is input row k of a [K x T] matrix (offset k * T).
SparseWeights linear_weights(const float* w, int K, int N, int64_t T, Isa isa) {
  if (K < 1 || N < 1 || T < 1)
    throw std::invalid_argument("SparseLinearOp: T, K and N must be >= 1, got T=" + std::to_string(T) +
                                ", K=" + std::to_string(K) + ", N=" + std::to_string(N));
  if ((K - 1) * T > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("SparseLinearOp: (K - 1) x T = " + std::to_string((K - 1) * T) +
                                " exceeds the spmm kernel's int32 offsets (expected at most 2^31 - 1)");
  if (K > kSpmmMaxK)
    throw std::invalid_argument("SparseLinearOp: K = " + std::to_string(K) +
                                " exceeds the spmm kernel's column limit (expected at most " +
                                std::to_string(kSpmmMaxK) + "); keep this layer dense");
  std::vector<float> wt(size_t(N) * K);
  transpose_2d(w, K, N, wt.data(), nullptr);
  std::vector<int64_t> off(static_cast<size_t>(K));
  for (int k = 0; k < K; ++k) off[k] = k * T;
  return SparseWeights(wt.data(), N, K, off.data(), isa, /*column_panels=*/T > 1);
}

}  // namespace

SparseOp::SparseOp(std::string name_prefix, SparseEpilogue ep, SparseWeights w, bool generated, bool in_place,
                   int column_classes, int base_lane)
    : ep_(std::move(ep)), w_(std::move(w)), prefix_(std::move(name_prefix)) {
  if (generated) {
    if (w_.isa() != Isa::kAvx512)
      throw std::invalid_argument(prefix_ + "*: generated code needs avx512, got " + isa_name(w_.isa()));
    program_ = std::make_unique<GeneratedSpmm>(
        w_, in_place && GeneratedSpmm::can_read_in_place(w_), column_classes, base_lane);
  }
  name_ = name_for(generated);
}

std::string SparseOp::name_for(bool generated) const {
  return prefix_ + (generated ? "generated_" : "") + isa_name(w_.isa());
}

void SparseOp::drop_generated() {
  if (w_.released()) throw std::logic_error(prefix_ + "*: the compressed weights were released, the code stays");
  program_.reset();
  name_ = name_for(false);
}

void SparseOp::release_compressed() {
  if (program_) w_.release_nonzeros();
}

void SparseOp::spmm(const float* in, int64_t Q, float* out, int64_t ldo, const Epilogue& ep, ThreadPool* pool,
                    const SpmmInputMap* map) const {
  if (program_)
    program_->run(in, Q, out, ldo, ep, pool, map);
  else
    spmm_f32(w_, in, Q, out, ldo, ep, pool, map);
}

namespace {

std::string conv_name_prefix(const ConvParams& p) {
  const bool one = is_direct(p) || is_subsample(p);
  return std::string("spmm_conv") + (one ? "1x1" : std::to_string(p.R) + "x" + std::to_string(p.S)) +
         (is_subsample(p) ? "_strided_" : "_");
}

SparseWeights conv_weights(const ConvParams& p, const float* weight, Isa isa, bool batch_major,
                           SparseConvOp::Padding padding) {
  checked(p);
  const int nb = batch_major ? p.N : 1;
  return SparseWeights(weight, p.K, p.C * p.R * p.S, tap_offsets(p, nb, padding).data(), isa,
                       /*column_panels=*/int64_t(nb) * p.OH() * p.OW() > 1);
}

SparseEpilogue sparse_epilogue(const float* bias, int n, Activation act, float alpha, float beta, bool has_residual) {
  return {bias ? std::vector<float>(bias, bias + std::max(n, 0)) : std::vector<float>(), act, alpha, beta,
          has_residual};
}

}  // namespace

SparseConvOp::SparseConvOp(const ConvParams& p, const float* weight, const float* bias, Activation act, float alpha,
                           float beta, Isa isa, bool has_residual, bool batch_major, bool generated)
    : SparseConvOp(p, weight, bias, act, alpha, beta, isa, has_residual, batch_major, generated,
                   conv_padding(p, batch_major, generated)) {}

SparseConvOp::SparseConvOp(const ConvParams& p, const float* weight, const float* bias, Activation act, float alpha,
                           float beta, Isa isa, bool has_residual, bool batch_major, bool generated, Padding padding)
    : SparseOp(conv_name_prefix(p), sparse_epilogue(bias, p.K, act, alpha, beta, has_residual),
               conv_weights(p, weight, isa, batch_major, padding), generated, conv_in_place(p, batch_major, padding),
               // the code's lane masks per tap column (in place, implicit padding along rows)
               padding == Padding::kRows ? p.S : 1, rows_base_lane(p, batch_major, padding)),
      p_(p),
      OH_(p.OH()),
      OW_(p.OW()),
      nb_(batch_major ? p.N : 1),
      direct_(is_direct(p)),
      subsample_(is_subsample(p)),
      padding_(padding),
      Q_(int64_t(nb_) * OH_ * OW_) {  // exactly the output pixels, whatever the path
  if (subsample_) {
    ws_in_ = size_t(p.C) * size_t(subsample_stride(p, nb_));
  } else if (padding_ != Padding::kCopy) {
    // The map walks planes of W-float rows: unpadded (kNone) or with the padding rows (kRows).
    Hh_ = padding_ == Padding::kRows ? p.H + p.pad_top + p.pad_bottom : p.H;
    Wh_ = p.W;
    if (padding_ == Padding::kRows) ws_in_ = size_t(p.C) * nb_ * Hh_ * Wh_ + 3 * kRowsGuard;
  } else if (!direct_) {
    Hh_ = ceil_div(p.H + p.pad_top + p.pad_bottom, p.stride_h);
    Wh_ = ceil_div(p.W + p.pad_left + p.pad_right, p.stride_w);
    ws_in_ = size_t(p.stride_h) * p.stride_w * p.C * size_t(nb_) * Hh_ * Wh_;
  }
}

void SparseConvOp::run(const float* const* in, float* const* out, ThreadPool* pool) const {
  // Per call: nb images (CNHW: the whole batch, NCHW: one image).
  const size_t in_call = size_t(p_.C) * nb_ * p_.H * p_.W, out_call = size_t(p_.K) * nb_ * OH_ * OW_;
  float* ws = direct_ ? nullptr : out[1];
  // KxK path: the spmm reads the output pixels as rows of OW positions, Wh apart, in images
  // Hh x Wh apart, over the phase planes.
  SpmmInputMap map{OW_, Wh_, int64_t(OH_) * OW_, int64_t(Hh_) * Wh_};
  const int top = padding_ == Padding::kNone ? p_.pad_top : 0;  // padding rows the map clips
  if (padding_ != Padding::kCopy) {
    map.taps_h = p_.R, map.taps_w = p_.S, map.in_h = Hh_, map.in_w = p_.W;
    map.pad_top = top, map.pad_left = p_.pad_left, map.dil_h = p_.dil_h, map.dil_w = p_.dil_w;
  }
  for (int n = 0; n < p_.N / nb_; ++n) {
    const float* x = in[0] + n * in_call;
    const float* src = x;
    if (padding_ != Padding::kCopy) {
      if (padding_ == Padding::kRows) {
        float* planes = rows_planes(ws);
        pad_rows(x, planes, p_.C * nb_, p_.H, p_.W, p_.pad_top, p_.pad_bottom, pool);
        x = planes;
      }
      // The offsets count from the padded window's corner, before the planes; only reads the
      // kernel clips away would land there (SpmmInputMap).
      src = map.corner(x);
    } else if (subsample_) {
      subsample(x, ws, pool);
      src = ws;
    } else if (!direct_) {
      pad_phase_split(x, ws, p_.C * nb_, p_.H, p_.W, p_.pad_top, p_.pad_left, p_.stride_h, p_.stride_w, Hh_, Wh_,
                      pool);
      src = ws;
    }
    const float* res = ep_.has_residual ? in[1] + n * out_call : nullptr;
    const SpmmInputMap* m = direct_ || subsample_ ? nullptr : &map;
    spmm(src, Q_, out[0] + n * out_call, Q_, ep_.with(res), pool, m);
  }
}

// ws[c * stride + i * OH * OW + oh * OW + ow] = x[((c * nb + i) * H + oh * sh) * W + ow * sw].
void SparseConvOp::subsample(const float* x, float* ws, ThreadPool* pool) const {
  const int64_t stride = subsample_stride(p_, nb_), plane_in = int64_t(p_.H) * p_.W, plane_out = int64_t(OH_) * OW_;
  auto channel = [&](size_t c) {
    for (int i = 0; i < nb_; ++i) {
      const float* src = x + (int64_t(c) * nb_ + i) * plane_in;
      float* dst = ws + int64_t(c) * stride + i * plane_out;
      for (int oh = 0; oh < OH_; ++oh) {
        const float* srow = src + int64_t(oh) * p_.stride_h * p_.W;
        float* drow = dst + int64_t(oh) * OW_;
        gather_stride(srow, p_.stride_w, drow, OW_);
      }
    }
  };
  if (pool && pool->num_threads() > 1 && p_.C > 1)
    pool->parallel_for(size_t(p_.C), channel);
  else
    for (size_t c = 0; c < size_t(p_.C); ++c) channel(c);
}

SparseLinearOp::SparseLinearOp(int64_t T, const float* weight, int K, int N, const float* bias, Activation act,
                               float alpha, float beta, Isa isa, bool has_residual, bool x_feature_major,
                               bool y_feature_major, bool generated)
    // The code reads packed copies: the [K x T] rows of a few hundred tokens are strided by a
    // power of two or near one, which in place piles a vector's loads into few L1 sets.
    : SparseOp("spmm_linear_", sparse_epilogue(bias, N, act, alpha, beta, has_residual),
               linear_weights(weight, K, N, T, isa), generated, /*in_place=*/false),
      T_(T),
      K_(K),
      N_(N),
      x_fm_(x_feature_major),
      y_fm_(y_feature_major) {}

void SparseLinearOp::run(const float* const* in, float* const* out, ThreadPool* pool) const {
  const float* res = ep_.has_residual ? in[1] : nullptr;
  if (T_ == 1) {  // x [1 x K] is already [K x 1], y [1 x N] is [N x 1]
    spmm(in[0], 1, out[0], 1, ep_.with(res), pool);
    return;
  }
  float* ws = workspace_floats() ? out[1] : nullptr;
  const float* xt = in[0];
  if (!x_fm_) {
    transpose_2d(in[0], T_, K_, ws, pool);
    xt = ws;
    ws += size_t(K_) * size_t(T_);
  }
  if (y_fm_) {  // act(acc + bias + residual) in the spmm's store
    spmm(xt, T_, out[0], T_, ep_.with(res), pool);
    return;
  }
  Epilogue ep = ep_.with(nullptr);
  float* yt = ws;
  if (res) ep.act = Activation::kNone;  // act(acc + bias + residual): after the residual
  spmm(xt, T_, yt, T_, ep, pool);
  if (res)
    transpose_add_act(yt, N_, T_, res, out[0], ep_.act, ep_.alpha, ep_.beta, pool);
  else
    transpose_2d(yt, N_, T_, out[0], pool);
}

}  // namespace si
