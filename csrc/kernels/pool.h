// Max / average pooling and global average pooling in the NCHWc layout. Padding lanes (channels
// beyond C) are zero in and stay zero out. pool_impl.h holds the kernels, instantiated per ISA.
#pragma once
#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace si {

enum class PoolKind { kMax, kAvg };

struct PoolParams {
  int N, C, H, W;
  int R, S;
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int dil_h = 1, dil_w = 1;
  bool count_include_pad = false;  // average: divide by the taps inside the padded input
  int OH, OW;                      // explicit (ceil_mode is decided by the caller)
};

// ONNX output size; with ceil_mode a last window starting in the end padding is dropped.
int pool_output_size(int in, int k, int stride, int pad_begin, int pad_end, int dil, bool ceil_mode);

// block 8 or 16 (NCHWc): the ISA picks the instantiation (AVX-512 needs block 16, AVX2 block 8,
// other combinations run the portable code). block 1 is plain NCHW (the layout of sparse convs,
// which then need no reorder around their pools), vectorised along the output rows.
void pool_nchwc(const PoolParams& p, PoolKind kind, const float* in, float* out, int block, ThreadPool* pool, Isa isa);
void global_avg_pool_nchwc(const float* in, float* out, int N, int C, int HW, int block, ThreadPool* pool, Isa isa);

#define SI_POOL_DECLARE(ns)                                                                           \
  namespace ns {                                                                                      \
  void pool_nchwc(const PoolParams& p, PoolKind kind, const float* in, float* out, int block, ThreadPool* pool); \
  void global_avg_pool_nchwc(const float* in, float* out, int N, int C, int HW, int block, ThreadPool* pool);   \
  }
SI_POOL_DECLARE(avx512)
SI_POOL_DECLARE(avx2)
SI_POOL_DECLARE(portable)
#undef SI_POOL_DECLARE

}  // namespace si
