// The CPU's memory read bandwidth, measured: all threads of the pool sum disjoint parts of a buffer
// far larger than the caches; the best of several passes counts.
#include "dsv3/backend/cpu/cpu_backend.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "dsv3/util/thread_pool.h"

namespace dsv3 {

double CpuBackend::measure_read_bandwidth() {
  constexpr size_t kBytes = size_t(1) << 30;  // 1 GiB: far beyond any last-level cache
  constexpr int kPasses = 5;
  std::vector<float> buffer(kBytes / sizeof(float), 1.0f);
  const int64_t n = int64_t(buffer.size());
  std::vector<float> sinks(size_t(ThreadPool::global().n_threads()) * 16);
  double best_s = 1e30;
  for (int pass = 0; pass < kPasses; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    ThreadPool::global().parallel_for(n, [&](int64_t begin, int64_t end) {
      float sum = 0.0f;
#if defined(__AVX512F__)
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
      int64_t i = begin;
      for (; i + 64 <= end; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(&buffer[size_t(i)]));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(&buffer[size_t(i + 16)]));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(&buffer[size_t(i + 32)]));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(&buffer[size_t(i + 48)]));
      }
      sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
      for (; i < end; ++i) sum += buffer[size_t(i)];
#else
      for (int64_t i = begin; i < end; ++i) sum += buffer[size_t(i)];
#endif
      sinks[size_t(begin * int64_t(sinks.size() / 16) / n) * 16] += sum;  // keep the loads alive
    }, 1 << 16);
    best_s = std::min(best_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return double(kBytes) / best_s;
}

}  // namespace dsv3
