// A Plan is a compiled, static-shape program: a list of ops reading and writing numbered
// slots (graph inputs, graph outputs, constants, or offsets in one arena). Running it is a
// loop over ops in C++, with the GIL released by the caller.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/huge_pages.h"
#include "runtime/thread_pool.h"

namespace si {

// One executable step. Ops know shapes and packed weights from construction; at run time
// they only get the buffers of their operands.
class Op {
 public:
  virtual ~Op() = default;
  virtual void run(const float* const* inputs, float* const* outputs, ThreadPool* pool) const = 0;
  virtual const char* kernel_name() const = 0;
  virtual size_t weight_bytes() const { return 0; }
};

class Plan {
 public:
  enum class SlotKind { kInput, kOutput, kArena, kConstant };

  explicit Plan(int num_threads, bool pin_threads = false);
  // A plan over the same ops as `other` (shared: their weights are held once) and constants,
  // with an arena and a thread pool of its own, so that it can run at the same time as
  // `other` (ops are const while running). For one stream of images per core.
  Plan(const Plan& other, int num_threads, bool pin_threads);

  int add_input_slot(size_t num_floats);
  int add_output_slot(size_t num_floats);
  int add_arena_slot(size_t offset_floats, size_t num_floats);
  int add_constant_slot(std::vector<float> data);
  void set_arena_size(size_t num_floats);
  void add_op(std::shared_ptr<Op> op, std::vector<int> input_slots, std::vector<int> output_slots);

  // inputs/outputs: one pointer per input/output slot, in the order the slots were added.
  void run(const float* const* inputs, float* const* outputs);

  size_t num_inputs() const { return input_slots_.size(); }
  size_t num_outputs() const { return output_slots_.size(); }
  size_t slot_size(int slot) const { return slots_.at(slot).num_floats; }
  size_t arena_bytes() const { return arena_.size() * sizeof(float); }
  size_t weight_bytes() const;
  size_t num_ops() const { return steps_.size(); }
  const Op& op(size_t i) const { return *steps_.at(i).op; }
  ThreadPool& pool() { return *pool_; }

  // Run only op i (for per-layer profiling); slots must have been filled by a run before.
  void run_single(size_t i);
  // Every op again, in order, on the slots of the last run: seconds per op, each measured in
  // the context of a whole run (caches as the previous ops left them).
  std::vector<double> run_timed();

 private:
  struct Slot {
    SlotKind kind;
    size_t offset = 0;  // arena offset (floats) or index into inputs/outputs/constants
    size_t num_floats = 0;
  };
  struct Step {
    std::shared_ptr<Op> op;
    std::vector<int> in, out;
  };
  void bind(const float* const* inputs, float* const* outputs);
  static constexpr size_t kArenaAlignFloats = 16;  // 64 bytes
  float* arena_base();  // arena_.data() rounded up to 64 bytes

  std::shared_ptr<ThreadPool> pool_;
  std::vector<Slot> slots_;
  std::vector<int> input_slots_, output_slots_;
  std::vector<std::vector<float>> constants_;
  std::vector<float, HugePageAllocator<float>> arena_;
  std::vector<Step> steps_;
  std::mutex run_mu_;         // one run at a time: slots and arena are per plan
  std::vector<float*> ptrs_;  // slot -> address, refreshed each run
  std::vector<std::vector<const float*>> step_in_;
  std::vector<std::vector<float*>> step_out_;
};

}  // namespace si
