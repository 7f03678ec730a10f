#include "runtime/plan.h"

#include <chrono>
#include <cstdint>

#include <stdexcept>
#include <utility>

namespace si {

Plan::Plan(int num_threads, bool pin_threads) : pool_(shared_thread_pool(num_threads, pin_threads)) {}

Plan::Plan(const Plan& other, int num_threads, bool pin_threads)
    : pool_(shared_thread_pool(num_threads, pin_threads)),
      slots_(other.slots_),
      input_slots_(other.input_slots_),
      output_slots_(other.output_slots_),
      constants_(other.constants_),
      arena_(other.arena_.size(), 0.f),
      steps_(other.steps_) {}

int Plan::add_input_slot(size_t n) {
  slots_.push_back({SlotKind::kInput, input_slots_.size(), n});
  input_slots_.push_back(static_cast<int>(slots_.size() - 1));
  return static_cast<int>(slots_.size() - 1);
}

int Plan::add_output_slot(size_t n) {
  slots_.push_back({SlotKind::kOutput, output_slots_.size(), n});
  output_slots_.push_back(static_cast<int>(slots_.size() - 1));
  return static_cast<int>(slots_.size() - 1);
}

int Plan::add_arena_slot(size_t offset, size_t n) {
  slots_.push_back({SlotKind::kArena, offset, n});
  return static_cast<int>(slots_.size() - 1);
}

int Plan::add_constant_slot(std::vector<float> data) {
  slots_.push_back({SlotKind::kConstant, constants_.size(), data.size()});
  constants_.push_back(std::move(data));
  return static_cast<int>(slots_.size() - 1);
}

void Plan::set_arena_size(size_t n) {
  for (const Slot& s : slots_)
    if (s.kind == SlotKind::kArena && s.offset + s.num_floats > n)
      throw std::invalid_argument("arena smaller than a slot placed in it");
  // 64 floats of slack so vector kernels may read a little past a tensor's end, and 16 more so
  // the arena can start on a cache line (std::vector only guarantees 16 bytes): every tensor
  // is then 64-byte aligned (the planner aligns offsets), which the kernels' full-vector loads
  // need to stay within one cache line (measured: misaligned spmm inputs cost up to a third).
  arena_.assign(n + 64 + kArenaAlignFloats, 0.f);
}

float* Plan::arena_base() {
  const uintptr_t p = reinterpret_cast<uintptr_t>(arena_.data());
  const uintptr_t mis = p % (kArenaAlignFloats * sizeof(float));
  return arena_.data() + (mis ? (kArenaAlignFloats * sizeof(float) - mis) / sizeof(float) : 0);
}

void Plan::add_op(std::shared_ptr<Op> op, std::vector<int> in, std::vector<int> out) {
  for (int s : in)
    if (s < 0 || static_cast<size_t>(s) >= slots_.size()) throw std::out_of_range("bad input slot");
  for (int s : out) {
    if (s < 0 || static_cast<size_t>(s) >= slots_.size()) throw std::out_of_range("bad output slot");
    if (slots_[s].kind == SlotKind::kInput || slots_[s].kind == SlotKind::kConstant)
      throw std::invalid_argument("an op may not write a graph input or a constant");
  }
  steps_.push_back({std::move(op), std::move(in), std::move(out)});
}

size_t Plan::weight_bytes() const {
  size_t total = 0;
  for (const Step& s : steps_) total += s.op->weight_bytes();
  for (const auto& c : constants_) total += c.size() * sizeof(float);
  return total;
}

void Plan::bind(const float* const* inputs, float* const* outputs) {
  if (ptrs_.size() != slots_.size()) {
    ptrs_.assign(slots_.size(), nullptr);
    step_in_.resize(steps_.size());
    step_out_.resize(steps_.size());
    for (size_t i = 0; i < steps_.size(); ++i) {
      step_in_[i].resize(steps_[i].in.size());
      step_out_[i].resize(steps_[i].out.size());
    }
  }
  for (size_t s = 0; s < slots_.size(); ++s) {
    const Slot& sl = slots_[s];
    switch (sl.kind) {
      case SlotKind::kInput: ptrs_[s] = const_cast<float*>(inputs[sl.offset]); break;
      case SlotKind::kOutput: ptrs_[s] = outputs[sl.offset]; break;
      case SlotKind::kArena: ptrs_[s] = arena_base() + sl.offset; break;
      case SlotKind::kConstant: ptrs_[s] = constants_[sl.offset].data(); break;
    }
  }
  for (size_t i = 0; i < steps_.size(); ++i) {
    for (size_t k = 0; k < steps_[i].in.size(); ++k) step_in_[i][k] = ptrs_[steps_[i].in[k]];
    for (size_t k = 0; k < steps_[i].out.size(); ++k) step_out_[i][k] = ptrs_[steps_[i].out[k]];
  }
}

void Plan::run(const float* const* inputs, float* const* outputs) {
  std::lock_guard<std::mutex> lock(run_mu_);
  const ThreadPool::CallerPin pin(*pool_);
  bind(inputs, outputs);
  for (size_t i = 0; i < steps_.size(); ++i)
    steps_[i].op->run(step_in_[i].data(), step_out_[i].data(), pool_.get());
}

std::vector<double> Plan::run_timed() {
  std::lock_guard<std::mutex> lock(run_mu_);
  if (step_in_.size() != steps_.size()) throw std::out_of_range("run_timed before run");
  std::vector<double> seconds(steps_.size());
  const ThreadPool::CallerPin pin(*pool_);
  for (size_t i = 0; i < steps_.size(); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    steps_[i].op->run(step_in_[i].data(), step_out_[i].data(), pool_.get());
    seconds[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return seconds;
}

void Plan::run_single(size_t i) {
  if (i >= steps_.size() || step_in_.size() != steps_.size()) throw std::out_of_range("run_single before run");
  const ThreadPool::CallerPin pin(*pool_);
  steps_[i].op->run(step_in_[i].data(), step_out_[i].data(), pool_.get());
}

}  // namespace si
