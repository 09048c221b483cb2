#include "dsv3/util/thread_pool.h"

#include <immintrin.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>

namespace dsv3 {
namespace {

constexpr int kSpinIterations = 1 << 14;  // about 50-100 microseconds of pause instructions

}  // namespace

ThreadPool::ThreadPool(int n_threads) : ranges_(size_t(std::max(1, n_threads))) {
  for (int i = 1; i < std::max(1, n_threads); ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1);
  }
  work_ready_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations) {
      _mm_pause();
      ++spins;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_) return;
    const auto [begin, end] = ranges_[size_t(index)];
    if (begin < end) (*job_)(begin, end);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  const int64_t n_chunks = (n + grain - 1) / grain;
  const int64_t n_parts = std::min<int64_t>(n_threads(), n_chunks);
  if (n_parts <= 1 || workers_.empty()) {
    fn(0, n);
    return;
  }
  std::lock_guard call_lock(call_mutex_);
  for (int64_t p = 0; p < n_threads(); ++p) {
    const int64_t begin = std::min(n, (n_chunks * std::min(p, n_parts) / n_parts) * grain);
    const int64_t end = p < n_parts ? std::min(n, (n_chunks * (p + 1) / n_parts) * grain) : begin;
    ranges_[size_t(p)] = {begin, end};
  }
  job_ = &fn;
  pending_.store(int(workers_.size()), std::memory_order_relaxed);
  {
    std::lock_guard lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  work_ready_.notify_all();
  const auto [begin, end] = ranges_[0];
  if (begin < end) fn(begin, end);
  while (pending_.load(std::memory_order_acquire) != 0) _mm_pause();
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool([] {
    if (const char* env = std::getenv("DSV3_THREADS")) return std::max(1, std::atoi(env));
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
    return int(std::thread::hardware_concurrency());
  }());
  return pool;
}

}  // namespace dsv3
