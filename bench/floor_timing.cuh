// What bench/decode_floor.cu and bench/persistent_floor.cu share: the median time of a replayed
// piece of work on a stream, weights of random finite FP8 codes and a plain read of them, a grid
// barrier's arrival, and main.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>

#include "dsv3/backend/cuda/cuda_check.h"
#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::floor {

constexpr int kReplays = 21;

// The median, over kReplays, of the microseconds enqueue(r) takes on the stream, divided by `per`;
// enqueue(0) warms up untimed, replays are 1..kReplays.
inline double median_us(cudaStream_t stream, int per, const std::function<void(int)>& enqueue) {
  cudaEvent_t start, stop;
  DSV3_CUDA_CHECK(cudaEventCreate(&start));
  DSV3_CUDA_CHECK(cudaEventCreate(&stop));
  enqueue(0);
  std::vector<double> us;
  for (int r = 1; r <= kReplays; ++r) {
    DSV3_CUDA_CHECK(cudaEventRecord(start, stream));
    enqueue(r);
    DSV3_CUDA_CHECK(cudaEventRecord(stop, stream));
    DSV3_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    DSV3_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    us.push_back(1e3 * ms / per);
  }
  std::sort(us.begin(), us.end());
  DSV3_CUDA_CHECK(cudaEventDestroy(start));
  DSV3_CUDA_CHECK(cudaEventDestroy(stop));
  return us[us.size() / 2];
}

__global__ void fill_bytes(uint8_t* p, int64_t n, uint32_t seed) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = uint8_t(h & 0x77);  // finite FP8 e4m3 codes
  }
}

// Vectors first, first + stride, ... of n_vectors folded together, 4 independent loads in flight.
__device__ inline unsigned fold_vectors(const uint4* weights, int64_t n_vectors, int64_t first, int64_t stride) {
  unsigned folded = 0;
  for (int64_t i = first; i < n_vectors; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      v[j] = i + j * stride < n_vectors
                 ? dsv3::cuda::load_weight_vector(reinterpret_cast<const uint8_t*>(weights + i + j * stride))
                 : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int j = 0; j < 4; ++j) folded ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  return folded;
}

// Every 16-byte vector once: the ceiling of any order of reading them.
__global__ void read_all(const uint4* weights, int64_t n_vectors, unsigned* sink) {
  const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  sink[thread] = fold_vectors(weights, n_vectors, thread, int64_t(gridDim.x) * blockDim.x);
}

// Spins until a count that only grows has reached `target`; what the count guards is visible after.
__device__ inline void wait_for_count(const unsigned* count, unsigned target) {
  unsigned seen;
  do asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(count) : "memory");
  while (seen < target);
}

// One thread's arrival at a grid barrier's count, after its block's stores (a block-wide barrier
// before it orders the others').
__device__ inline void arrive_at_count(unsigned* count) {
  __threadfence();
  atomicAdd(count, 1u);
}

// One thread's arrival at grid barrier `i` (from 1) of a launch of co-resident blocks, and its wait
// for every block's: a count that only grows, from `base` (what the launches before left in it).
__device__ inline void arrive_and_wait(unsigned* count, unsigned base, int i) {
  arrive_at_count(count);
  wait_for_count(count, base + unsigned(i) * gridDim.x);
}

// A floor binary's main: run(), a failed CUDA call reported as one line and exit status 1.
inline int run_reporting_errors(const char* binary, void (*run)()) {
  try {
    run();
  } catch (const dsv3::Error& e) {
    std::fprintf(stderr, "%s: %s\n", binary, e.what());
    return 1;
  }
  return 0;
}

}  // namespace dsv3::floor
