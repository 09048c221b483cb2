#include "dsv3/model/page_allocator.h"

#include "dsv3/util/error.h"

namespace dsv3 {

PageAllocator::PageAllocator(int64_t n_pages) {
  free_.reserve(size_t(n_pages));
  for (int64_t p = n_pages - 1; p >= 0; --p) free_.push_back(int32_t(p));
}

void PageAllocator::reserve(CacheSequence& sequence, int64_t n_tokens, int64_t page_size) {
  const int64_t needed = (n_tokens + page_size - 1) / page_size - int64_t(sequence.block_table.size());
  if (needed > n_free())
    fail("the KV cache is full: ", n_tokens, " tokens need ", needed, " more pages of ", page_size,
         " tokens and ", n_free(), " are free (raise --kv-cache-tokens)");
  for (int64_t i = 0; i < needed; ++i) {
    sequence.block_table.push_back(free_.back());
    free_.pop_back();
  }
}

void PageAllocator::release(CacheSequence& sequence) {
  for (int32_t page : sequence.block_table) free_.push_back(page);
  sequence.block_table.clear();
  sequence.n_tokens = 0;
}

}  // namespace dsv3
