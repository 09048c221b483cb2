// A fixed pool of worker threads for data-parallel loops: parallel_for splits [0, n) into
// contiguous chunks, one a thread, and returns when all are done. The calling thread takes a chunk.
// A decode step issues hundreds of short loops, so idle workers spin briefly on an atomic
// generation counter before sleeping: waking a thread through a condition variable costs tens of
// microseconds, more than many of the loops themselves.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv3 {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const { return int(workers_.size()) + 1; }

  // Calls fn(begin, end) over disjoint ranges covering [0, n); ranges are multiples of `grain`
  // (except the last) so callers can keep vector lanes or cache lines whole. Not reentrant: fn
  // must not call parallel_for on the same pool.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

  // The process-wide pool, sized to the cores this process may use (DSV3_THREADS overrides).
  static ThreadPool& global();

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;  // guards sleeping on work_ready_
  std::condition_variable work_ready_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};
  std::mutex call_mutex_;  // one parallel_for at a time from different threads
};

}  // namespace dsv3
