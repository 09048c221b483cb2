// Hands out pages of the latent cache to sequences and takes them back. A sequence grows page by
// page; when no page is free the request for more fails with a clear error instead of overwriting.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv3/backend/latent_cache.h"

namespace dsv3 {

class PageAllocator {
 public:
  explicit PageAllocator(int64_t n_pages);

  // Adds pages to `sequence` until it can hold `n_tokens`; throws dsv3::Error when the cache is full
  // (the pages it already had stay).
  void reserve(CacheSequence& sequence, int64_t n_tokens, int64_t page_size);
  // Returns all of `sequence`'s pages and empties it.
  void release(CacheSequence& sequence);
  int64_t n_free() const { return int64_t(free_.size()); }

 private:
  std::vector<int32_t> free_;
};

}  // namespace dsv3
