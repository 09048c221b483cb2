// What the MLA decode attention kernels share: where a cached row lives, and the asynchronous copies
// that bring cache tiles into shared memory.
#pragma once

#include <cstdint>

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

__device__ inline const float* cache_row(DeviceCacheLayer cache, const int32_t* table, int64_t position) {
  const int64_t page = table[position / cache.page_size];
  return cache.data + (page * cache.page_size + position % cache.page_size) * cache.row_width;
}

// 16 bytes global -> shared without passing through registers; zeros where !real (src unread).
__device__ inline void copy_async16(float* dst, const float* src, bool real) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(address), "l"(src), "r"(real ? 16 : 0));
}
__device__ inline void copy_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int kPending>
__device__ inline void copy_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(kPending)); }

// The rows [begin, end) of an item that split `split` of n_splits attends to: whole tiles of
// tile_rows a split, so that no split ends on a tile of few rows.
__device__ inline void split_rows(int context_len, int split, int n_splits, int tile_rows, int& begin, int& end) {
  const int chunk = ((context_len + n_splits - 1) / n_splits + tile_rows - 1) / tile_rows * tile_rows;
  begin = min(context_len, split * chunk);
  end = min(context_len, begin + chunk);
}

}  // namespace dsv3::cuda
