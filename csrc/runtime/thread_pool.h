// One pool per engine: exactly num_threads threads busy during a parallel region (the caller
// is one of them), workers spin briefly after a region and then sleep, so back-to-back layers
// do not pay a wake-up while an idle engine costs no CPU.
#pragma once
#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace si {

// Non-owning reference to a callable `void(size_t task)`; avoids std::function allocation.
class TaskRef {
 public:
  template <class F>
  TaskRef(const F& f) : obj_(&f), call_([](const void* o, size_t i) { (*static_cast<const F*>(o))(i); }) {}
  void operator()(size_t i) const { call_(obj_, i); }

 private:
  const void* obj_;
  void (*call_)(const void*, size_t);
};

class ThreadPool {
 public:
  // pin: bind worker k to the k-th CPU of the constructing thread's affinity mask, and the
  // caller (thread 0) to the first while a CallerPin holds it.
  explicit ThreadPool(int num_threads, bool pin = false);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs fn(t) for t in [0, num_tasks), tasks handed out dynamically; returns when all are done.
  // Not reentrant: a task must not call parallel_for on the same pool.
  void parallel_for(size_t num_tasks, TaskRef fn);
  // Runs fn(t) for t in [0, num_tasks) with task t always on thread t % num_threads (the caller
  // is thread 0): ops that split their data the same way run each thread on what it produced
  // itself, which stays in its own caches. That matters most when the threads' cores do not
  // share an L3 (a 2-vCPU VM whose host sometimes places the vCPUs apart: a cache line written
  // by one thread and then used by the other costs ~4x there; see cross_core_round_trip_ns).
  void parallel_for_static(size_t num_tasks, TaskRef fn);

  // While alive, binds the calling thread to the pinned pool's first CPU (a no-op for an
  // unpinned pool), then gives it back its own affinity: the caller is thread 0 of every region,
  // but it is the user's thread, and a binding that outlived the run would hold every thread it
  // starts later (an unpinned engine's workers among them) to that one CPU.
  class CallerPin {
   public:
    explicit CallerPin(const ThreadPool& pool);
    ~CallerPin();
    CallerPin(const CallerPin&) = delete;
    CallerPin& operator=(const CallerPin&) = delete;

   private:
    bool restore_ = false;
    cpu_set_t saved_;
  };

 private:
  void worker_loop(int index);
  void run_tasks(int self);
  void dispatch(size_t num_tasks, TaskRef fn, bool is_static);

  int num_threads_;
  int caller_cpu_ = -1;  // pinned pools: the CPU of thread 0 (the caller) during a CallerPin
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_workers_{0};
  std::atomic<size_t> next_task_{0};
  size_t num_tasks_ = 0;
  bool static_ = false;
  const TaskRef* fn_ = nullptr;
  bool stop_ = false;
  std::mutex call_mu_;  // serialises parallel_for callers sharing one pool
};

// The process-wide pool for (num_threads, pin): engines with the same core count share one set
// of workers, so several engines running at once keep at most num_threads threads busy
// instead of oversubscribing the cores (their parallel regions take turns).
std::shared_ptr<ThreadPool> shared_thread_pool(int num_threads, bool pin);

// Number of physical cores available to this process (affinity mask, SMT siblings counted once).
int physical_core_count();

// Median nanoseconds for a cache line to travel from the first CPU of this process's affinity
// mask to the second and back (two threads pinned there, `round_trips` exchanges in batches),
// or -1 with fewer than two CPUs. A machine-state probe for benchmarks: on a 2-vCPU VM it reads
// ~60 ns while the vCPUs share a core complex and ~330 ns while the host places them apart, when
// our 2-thread runs slow down (the bimodal timings in the README).
double cross_core_round_trip_ns(int round_trips = 20000);

}  // namespace si
