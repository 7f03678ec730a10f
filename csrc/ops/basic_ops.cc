#include "ops/basic_ops.h"

#include <algorithm>
#include <cstring>

namespace si {

BinaryOp::BinaryOp(BinaryKind kind, std::vector<int64_t> a, std::vector<int64_t> b,
                   std::vector<int64_t> out, Activation act, float alpha, float beta)
    : kind_(kind), a_(std::move(a)), b_(std::move(b)), out_(std::move(out)), act_(act), alpha_(alpha), beta_(beta) {}

void BinaryOp::run(const float* const* in, float* const* out, ThreadPool* pool) const {
  binary_broadcast(kind_, in[0], a_, in[1], b_, out[0], out_, act_, alpha_, beta_, pool);
}

void UnaryOp::run(const float* const* in, float* const* out, ThreadPool* pool) const {
  unary_activation(in[0], out[0], n_, act_, alpha_, beta_, pool);
}

void SoftmaxOp::run(const float* const* in, float* const* out, ThreadPool* pool) const {
  if (!rows()) return softmax(in[0], out[0], outer_, axis_, inner_, log_, pool);
  const int64_t chunk = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(axis_, 1));
  const int64_t tasks = (outer_ + chunk - 1) / chunk;
  auto work = [&](size_t t) {
    const int64_t r0 = int64_t(t) * chunk, r1 = std::min(outer_, r0 + chunk);
    softmax_rows(in[0] + r0 * axis_, axis_, out[0] + r0 * axis_, axis_, r1 - r0, axis_, 1.f, nullptr, 0, isa_);
  };
  if (pool && tasks > 1) pool->parallel_for(size_t(tasks), work);
  else for (int64_t t = 0; t < tasks; ++t) work(size_t(t));
}

void TransposeOp::run(const float* const* in, float* const* out, ThreadPool* pool) const {
  transpose(in[0], out[0], shape_, perm_, pool);
}

void ConcatOp::run(const float* const* in, float* const* out, ThreadPool*) const {
  int64_t total = 0, offset = 0;
  for (int64_t w : inners_) total += w;
  for (size_t i = 0; i < inners_.size(); ++i) {
    copy_strided_block(in[i], outer_, inners_[i], out[0], total, offset);
    offset += inners_[i];
  }
}

void ReduceOp::run(const float* const* in, float* const* out, ThreadPool* pool) const {
  reduce(in[0], out[0], shape_, axes_, kind_, pool);
}

void PadOp::run(const float* const* in, float* const* out, ThreadPool*) const {
  pad_constant(in[0], out[0], shape_, pads_, value_);
}

void CopyOp::run(const float* const* in, float* const* out, ThreadPool*) const {
  if (in[0] != out[0]) std::memcpy(out[0], in[0], n_ * sizeof(float));
}

}  // namespace si
