// Device memory for activations: a caching pool over cudaMalloc. The forward pass allocates and frees
// the same sizes every step; cudaMalloc and cudaFree synchronise the device, so freed blocks are kept
// by size and handed out again. All work runs on one stream, so a block freed on the host while a
// queued kernel still reads it is only reused by kernels queued after that one.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

#include "dsv3/backend/buffer.h"

namespace dsv3::cuda {

class DevicePool : public std::enable_shared_from_this<DevicePool> {
 public:
  ~DevicePool();
  // A block of at least n_bytes (256-byte aligned); freed back into the pool.
  Buffer allocate(size_t n_bytes);
  // Returns every cached block to the driver.
  void trim();

 private:
  Buffer owned(void* block, size_t n_bytes, size_t block_size);
  void give_back(void* block, size_t block_size);

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;  // cached blocks by size
};

// Device memory straight from cudaMalloc, freed with cudaFree: weights and the cache.
Buffer device_alloc(size_t n_bytes, const char* what);
// Host memory pinned for asynchronous copies (cudaMallocHost), freed with cudaFreeHost.
Buffer pinned_alloc(size_t n_bytes);

}  // namespace dsv3::cuda
