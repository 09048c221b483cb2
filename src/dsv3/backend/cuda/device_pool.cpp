#include "dsv3/backend/cuda/device_pool.h"

#include "dsv3/backend/cuda/cuda_check.h"

namespace dsv3::cuda {
namespace {

// Sizes are rounded so that a step's slightly different sizes (one more token) reuse blocks.
size_t rounded_size(size_t n_bytes) {
  constexpr size_t kSmall = 1 << 20, kSmallGrain = 512, kLargeGrain = 2 << 20;
  if (n_bytes <= kSmall) return (std::max<size_t>(n_bytes, 1) + kSmallGrain - 1) / kSmallGrain * kSmallGrain;
  return (n_bytes + kLargeGrain - 1) / kLargeGrain * kLargeGrain;
}

}  // namespace

DevicePool::~DevicePool() { trim(); }

Buffer DevicePool::allocate(size_t n_bytes) {
  const size_t size = rounded_size(n_bytes);
  void* block = nullptr;
  {
    std::lock_guard lock(mutex_);
    // Reuse a cached block no more than twice the size asked for.
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= 2 * size) {
      block = it->second;
      const size_t block_size = it->first;
      free_.erase(it);
      return owned(block, n_bytes, block_size);
    }
  }
  if (cudaMalloc(&block, size) != cudaSuccess) {
    cudaGetLastError();  // clear the out-of-memory error, free the cache and try once more
    trim();
    if (cudaMalloc(&block, size) != cudaSuccess) {
      cudaGetLastError();
      size_t free_bytes = 0, total = 0;
      cudaMemGetInfo(&free_bytes, &total);
      fail("out of GPU memory: ", n_bytes, " bytes of activations asked for, ", free_bytes, " of ", total,
           " bytes free; lower --kv-cache-tokens or the batch");
    }
  }
  return owned(block, n_bytes, size);
}

Buffer DevicePool::owned(void* block, size_t n_bytes, size_t block_size) {
  std::weak_ptr<DevicePool> pool = weak_from_this();
  return Buffer(block, n_bytes, [pool, block_size](void* p) {
    if (auto alive = pool.lock()) alive->give_back(p, block_size);
    else cudaFree(p);
  });
}

void DevicePool::give_back(void* block, size_t n_bytes) {
  std::lock_guard lock(mutex_);
  free_.emplace(n_bytes, block);
}

void DevicePool::trim() {
  std::lock_guard lock(mutex_);
  if (!free_.empty()) cudaDeviceSynchronize();
  for (auto& [size, block] : free_) cudaFree(block);
  free_.clear();
}

Buffer device_alloc(size_t n_bytes, const char* what) {
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(n_bytes, 1)) != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    fail("out of GPU memory for ", what, ": ", n_bytes, " bytes asked for, ", free_bytes, " of ", total, " bytes free");
  }
  return Buffer(p, n_bytes, [](void* q) { cudaFree(q); });
}

Buffer pinned_alloc(size_t n_bytes) {
  void* p = nullptr;
  if (cudaMallocHost(&p, std::max<size_t>(n_bytes, 1)) != cudaSuccess) {
    cudaGetLastError();
    fail("out of pinned host memory: ", n_bytes, " bytes asked for");
  }
  return Buffer(p, n_bytes, [](void* q) { cudaFreeHost(q); });
}

}  // namespace dsv3::cuda
