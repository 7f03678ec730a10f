// Pooling dispatch and the portable instantiation of pool_impl.h.
#include "kernels/pool.h"

#include <cstddef>
#include <vector>
#include <stdexcept>
#include <string>

namespace si {

namespace portable {
#include "kernels/pool_impl.h"
}  // namespace portable

int pool_output_size(int in, int k, int stride, int pad_begin, int pad_end, int dil, bool ceil_mode) {
  const int span = in + pad_begin + pad_end - dil * (k - 1) - 1;
  if (span < 0) return 0;
  int out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad_begin) --out;
  return out;
}

namespace {
void check_block(int block, Isa isa) {
  if (block != 8 && block != 16) throw std::invalid_argument("pool: block must be 8 or 16");
  if (int(isa) > int(best_isa()))
    throw std::invalid_argument(std::string("pool: ISA ") + isa_name(isa) + " is not supported by this CPU");
}
}  // namespace

void pool_nchwc(const PoolParams& p, PoolKind kind, const float* in, float* out, int block, ThreadPool* tp, Isa isa) {
  if (block != 1) check_block(block, isa);
  if (p.N < 1 || p.C < 1 || p.H < 1 || p.W < 1 || p.R < 1 || p.S < 1 || p.OH < 1 || p.OW < 1 || p.stride_h < 1 ||
      p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1 || p.pad_top < 0 || p.pad_left < 0 || p.pad_bottom < 0 ||
      p.pad_right < 0)
    throw std::invalid_argument("pool: invalid shape, kernel, stride, pad or dilation");
  if (block == 1) {  // plain NCHW: one plane per channel, vectorised along the rows
    if (isa == Isa::kAvx512) return avx512::pool_nchwc(p, kind, in, out, 1, tp);
    if (isa == Isa::kAvx2) return avx2::pool_nchwc(p, kind, in, out, 1, tp);
    return portable::pool_nchwc(p, kind, in, out, 1, tp);
  }
  if (isa == Isa::kAvx512 && block == 16) return avx512::pool_nchwc(p, kind, in, out, block, tp);
  if (isa != Isa::kPortable && block == 8) return avx2::pool_nchwc(p, kind, in, out, block, tp);
  portable::pool_nchwc(p, kind, in, out, block, tp);
}

void global_avg_pool_nchwc(const float* in, float* out, int N, int C, int HW, int block, ThreadPool* tp, Isa isa) {
  check_block(block, isa);
  if (N < 1 || C < 1 || HW < 1) throw std::invalid_argument("global_avg_pool: empty input");
  if (isa == Isa::kAvx512 && block == 16) return avx512::global_avg_pool_nchwc(in, out, N, C, HW, block, tp);
  if (isa != Isa::kPortable && block == 8) return avx2::global_avg_pool_nchwc(in, out, N, C, HW, block, tp);
  portable::global_avg_pool_nchwc(in, out, N, C, HW, block, tp);
}

}  // namespace si
