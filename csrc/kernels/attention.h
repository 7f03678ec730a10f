// Scaled dot-product attention of every (batch, head) in one kernel:
//   out = softmax(Q K^T * scale + mask) V
// Q is Sq x D, K is Sk x D, V is Sk x Dv, out is Sq x Dv per (batch, head). Each operand is
// addressed by (batch, head, row) strides in floats with contiguous rows, so Q/K/V can be read
// straight from a projection's [B, S, H, D] output and out written in [B, S, H, Dv], without
// the transposes around the attention block. The mask (nullable) is added to the scaled
// scores: its rows are Sk contiguous floats, its strides 0 along broadcast dims.
//
// Work: one task per (batch, head, block of query rows); per task a Q K^T GEMM into an
// L2-resident score tile, the row softmax (softmax.h), and a P V GEMM into the output.
#pragma once
#include <cstdint>

#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace si {

struct AttentionParams {
  int B = 1, H = 1, Sq = 1, Sk = 1, D = 1, Dv = 1;
  int64_t q_batch = 0, q_head = 0, q_row = 0;
  int64_t k_batch = 0, k_head = 0, k_row = 0;
  int64_t v_batch = 0, v_head = 0, v_row = 0;
  int64_t o_batch = 0, o_head = 0, o_row = 0;
  int64_t m_batch = 0, m_head = 0, m_row = 0;
  float scale = 1.f;
};

void attention(const AttentionParams& p, const float* q, const float* k, const float* v, const float* mask,
               float* out, ThreadPool* pool, Isa isa);

}  // namespace si
