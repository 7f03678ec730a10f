// Layout conversions between plain NCHW and the blocked NCHWc layout ([N][ceil(C/B)][HW][B],
// channels beyond C stored as exact zeros) that conv/pool kernels keep through the network.
#pragma once
#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace si {

// Channel block of the NCHWc layout used by the kernels of `isa`: 16 (AVX-512), 8 otherwise.
int nchwc_block(Isa isa);

// HW is the product of the spatial dims; pool may be nullptr (single-threaded).
void reorder_nchw_to_nchwc(const float* src, float* dst, int N, int C, int HW, int block, ThreadPool* pool);
void reorder_nchwc_to_nchw(const float* src, float* dst, int N, int C, int HW, int block, ThreadPool* pool);

}  // namespace si
