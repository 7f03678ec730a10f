// Layout conversions between plain NCHW and the blocked NCHWc layout ([N][ceil(C/B)][HW][B],
// channels beyond C stored as exact zeros) that conv/pool kernels keep through the network.
#pragma once
#include <cstdint>

#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace si {

// Channel block of the NCHWc layout used by the kernels of `isa`: 16 (AVX-512), 8 otherwise.
int nchwc_block(Isa isa);

// HW is the product of the spatial dims; pool may be nullptr (single-threaded).
void reorder_nchw_to_nchwc(const float* src, float* dst, int N, int C, int HW, int block, ThreadPool* pool);
void reorder_nchwc_to_nchw(const float* src, float* dst, int N, int C, int HW, int block, ThreadPool* pool);

// Convolution as sparse x dense needs every tap's input run to be contiguous: the image's planes
// are zero-padded and split into stride phases, so that a strided KxK conv reads each tap as a
// contiguous run of Hh x Wh positions. For one image (C planes of H x W):
//   dst[((ph * sw + pw) * C + c) * Hh * Wh + i * Wh + j] = src[c][i * sh + ph - pad_top][j * sw + pw - pad_left]
// (0 outside the image), for ph < sh, pw < sw, i < Hh, j < Wh. Stride 1 is a plain zero pad.
void pad_phase_split(const float* src, float* dst, int C, int H, int W, int pad_top, int pad_left, int sh,
                     int sw, int Hh, int Wh, ThreadPool* pool);

// Planes of H x W (contiguous) into planes with pad_top zero rows before and pad_bottom after:
// dst[p * (pad_top + H + pad_bottom) * W + (pad_top + i) * W + j] = src[p * H * W + i * W + j].
// One contiguous copy per plane (a conv whose kernel clips its taps to the rows needs no
// padding columns).
void pad_rows(const float* src, float* dst, int planes, int H, int W, int pad_top, int pad_bottom, ThreadPool* pool);

// dst[j] = src[j * stride] for j < n (stride 2, a stride-2 conv's columns: 4 at a time with SSE
// shuffles; measured 1.4-2x faster than one at a time on resnet50's stride-2 inputs).
void gather_stride(const float* src, int64_t stride, float* dst, int n);

}  // namespace si
