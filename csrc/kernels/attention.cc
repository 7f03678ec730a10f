#include "kernels/attention.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/softmax.h"

namespace si {

void attention(const AttentionParams& p, const float* q, const float* k, const float* v, const float* mask,
               float* out, ThreadPool* pool, Isa isa) {
  if (p.B < 1 || p.H < 1 || p.Sq < 1 || p.Sk < 1 || p.D < 1 || p.Dv < 1)
    throw std::invalid_argument("attention: every dimension must be >= 1");
  const int threads = pool ? pool->num_threads() : 1;
  const int heads = p.B * p.H;
  // Query-row blocks: enough tasks to keep every thread busy, and a score tile that stays in
  // L2 (rows x Sk floats).
  int q_blocks = std::max(1, (2 * threads + heads - 1) / heads);
  q_blocks = std::max(q_blocks, (p.Sq * p.Sk + (64 << 10) - 1) / (64 << 10));
  q_blocks = std::min(q_blocks, p.Sq);
  const int qb = (p.Sq + q_blocks - 1) / q_blocks;
  q_blocks = (p.Sq + qb - 1) / qb;
  const Epilogue none;
  auto task = [&](size_t t) {
    const int blk = int(t % size_t(q_blocks)), bh = int(t / size_t(q_blocks));
    const int b = bh / p.H, h = bh % p.H;
    const int r0 = blk * qb, rows = std::min(qb, p.Sq - r0);
    thread_local std::vector<float> scores;
    if (scores.size() < size_t(qb) * p.Sk) scores.resize(size_t(qb) * p.Sk);
    const float* qp = q + b * p.q_batch + h * p.q_head + r0 * p.q_row;
    const float* kp = k + b * p.k_batch + h * p.k_head;
    const float* vp = v + b * p.v_batch + h * p.v_head;
    float* op = out + b * p.o_batch + h * p.o_head + r0 * p.o_row;
    sgemm(rows, p.Sk, p.D, qp, int(p.q_row), kp, int(p.k_row), true, scores.data(), p.Sk, none, nullptr, isa);
    const float* mp = mask ? mask + b * p.m_batch + h * p.m_head + r0 * p.m_row : nullptr;
    softmax_rows(scores.data(), p.Sk, scores.data(), p.Sk, rows, p.Sk, p.scale, mp, p.m_row, isa);
    sgemm(rows, p.Dv, p.Sk, scores.data(), p.Sk, vp, int(p.v_row), false, op, int(p.o_row), none, nullptr, isa);
  };
  const size_t tasks = size_t(heads) * q_blocks;
  if (pool && threads > 1 && tasks > 1) pool->parallel_for(tasks, task);
  else for (size_t t = 0; t < tasks; ++t) task(t);
}

}  // namespace si
