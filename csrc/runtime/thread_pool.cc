#include "runtime/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>

namespace si {
namespace {

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

std::shared_ptr<ThreadPool> shared_thread_pool(int num_threads, bool pin) {
  static std::mutex mu;
  static std::map<std::pair<int, bool>, std::weak_ptr<ThreadPool>> pools;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = pools[{num_threads, pin}];
  std::shared_ptr<ThreadPool> pool = slot.lock();
  if (!pool) {
    pool = std::make_shared<ThreadPool>(num_threads, pin);
    slot = pool;
  }
  return pool;
}

int physical_core_count() {
  std::vector<int> cpus = allowed_cpus();
  if (cpus.empty()) return std::max(1u, std::thread::hardware_concurrency());
  std::set<std::pair<std::string, std::string>> cores;
  for (int c : cpus) {
    std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/";
    std::ifstream pkg(base + "physical_package_id"), core(base + "core_id");
    std::string p, k;
    if (!(pkg >> p) || !(core >> k)) return static_cast<int>(cpus.size());
    cores.insert({p, k});
  }
  return static_cast<int>(cores.size());
}

double cross_core_round_trip_ns(int round_trips) {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.size() < 2 || round_trips < 1) return -1.0;
  constexpr int kBatch = 500;
  const int batches = std::max(1, round_trips / kBatch);
  // 0: the initiator's turn, 1: the responder's, 2: stop. Batches stop after ~50 ms in all (a
  // CPU shared with other work makes each exchange wait for a time slice).
  alignas(64) std::atomic<int> ball{0};
  std::vector<double> per_trip;
  std::thread responder([&] {
    pin_to(cpus[1]);
    for (;;) {
      int v;
      while ((v = ball.load(std::memory_order_acquire)) == 0) {
      }
      if (v == 2) return;
      ball.store(0, std::memory_order_release);
    }
  });
  std::thread initiator([&] {
    pin_to(cpus[0]);
    const auto start = std::chrono::steady_clock::now();
    for (int b = 0; b < batches && std::chrono::steady_clock::now() - start < std::chrono::milliseconds(50); ++b) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < kBatch; ++i) {
        ball.store(1, std::memory_order_release);
        while (ball.load(std::memory_order_acquire) != 0) {
        }
      }
      per_trip.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
                         kBatch);
    }
    ball.store(2, std::memory_order_release);
  });
  initiator.join();
  responder.join();
  std::sort(per_trip.begin(), per_trip.end());
  return per_trip[per_trip.size() / 2];
}

ThreadPool::ThreadPool(int num_threads, bool pin) : num_threads_(num_threads < 1 ? 1 : num_threads) {
  std::vector<int> cpus = pin ? allowed_cpus() : std::vector<int>{};
  if (pin && !cpus.empty()) caller_cpu_ = cpus[0];
  for (int i = 1; i < num_threads_; ++i) {
    int cpu = (pin && !cpus.empty()) ? cpus[i % cpus.size()] : -1;
    workers_.emplace_back([this, i, cpu] {
      if (cpu >= 0) pin_to(cpu);
      worker_loop(i);
    });
  }
}

ThreadPool::CallerPin::CallerPin(const ThreadPool& pool) {
  if (pool.caller_cpu_ < 0) return;
  CPU_ZERO(&saved_);
  restore_ = pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) == 0;
  pin_to(pool.caller_cpu_);
}

ThreadPool::CallerPin::~CallerPin() {
  if (restore_) pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_tasks(int self) {
  const TaskRef& fn = *fn_;
  if (static_) {
    for (size_t t = size_t(self); t < num_tasks_; t += size_t(num_threads_)) fn(t);
    return;
  }
  for (;;) {
    size_t t = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (t >= num_tasks_) break;
    fn(t);
  }
}

void ThreadPool::worker_loop(int self) {
  uint64_t seen = 0;
  for (;;) {
    // Spin for a short while: the next layer usually starts within microseconds.
    auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    uint64_t gen;
    int spins = 0;
    while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
      cpu_relax();
      if (++spins % 64 == 0 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
    }
    seen = gen;
    if (stop_) return;
    run_tasks(self);
    active_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(size_t num_tasks, TaskRef fn) { dispatch(num_tasks, fn, false); }

void ThreadPool::parallel_for_static(size_t num_tasks, TaskRef fn) { dispatch(num_tasks, fn, true); }

void ThreadPool::dispatch(size_t num_tasks, TaskRef fn, bool is_static) {
  if (num_tasks == 0) return;
  if (num_threads_ == 1 || num_tasks == 1) {
    for (size_t t = 0; t < num_tasks; ++t) fn(t);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  fn_ = &fn;
  num_tasks_ = num_tasks;
  static_ = is_static;
  next_task_.store(0, std::memory_order_relaxed);
  active_workers_.store(num_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_tasks(0);
  while (active_workers_.load(std::memory_order_acquire) != 0) cpu_relax();
  fn_ = nullptr;
}

}  // namespace si
