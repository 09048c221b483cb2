#include "dsv3/util/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace dsv3 {

ThreadPool::ThreadPool(int n_threads) {
  for (int i = 1; i < std::max(1, n_threads); ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    std::pair<int64_t, int64_t> range;
    const std::function<void(int64_t, int64_t)>* job;
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      range = ranges_[index];
      job = job_;
    }
    if (range.first < range.second) (*job)(range.first, range.second);
    {
      std::lock_guard lock(mutex_);
      if (--pending_ == 0) work_done_.notify_one();
    }
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
  std::vector<std::pair<int64_t, int64_t>> ranges(size_t(n_threads()), {0, 0});
  for (int64_t p = 0; p < n_parts; ++p) {
    const int64_t begin = std::min(n, (n_chunks * p / n_parts) * grain);
    const int64_t end = std::min(n, (n_chunks * (p + 1) / n_parts) * grain);
    ranges[size_t(p)] = {begin, end};
  }
  {
    std::lock_guard lock(mutex_);
    ranges_ = std::move(ranges);
    job_ = &fn;
    pending_ = int(workers_.size());
    ++generation_;
  }
  work_ready_.notify_all();
  const auto [begin, end] = ranges_[0];
  if (begin < end) fn(begin, end);
  std::unique_lock lock(mutex_);
  work_done_.wait(lock, [&] { return pending_ == 0; });
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
