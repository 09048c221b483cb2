#include "dsv3/model/page_allocator.h"

#include <algorithm>

#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

// The hash of a prefix: the hash of the prefix one page shorter combined with this page's tokens.
uint64_t chain_hash(uint64_t previous, std::span<const int32_t> page_tokens) {
  uint64_t h = previous ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : page_tokens) {
    h ^= uint64_t(uint32_t(t)) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
  }
  return h;
}

}  // namespace

PageAllocator::PageAllocator(int64_t n_pages, int64_t page_size) : page_size_(page_size), pages_(size_t(n_pages)) {
  free_.reserve(size_t(n_pages));
  for (int64_t p = n_pages - 1; p >= 0; --p) free_.push_back(int32_t(p));
}

void PageAllocator::hold(int32_t page) {
  Page& p = pages_[size_t(page)];
  if (p.holders++ == 0 && p.published) evictable_.erase(p.lru_position);
}

int32_t PageAllocator::take_page() {
  if (!free_.empty()) {
    const int32_t page = free_.back();
    free_.pop_back();
    return page;
  }
  const int32_t page = evictable_.front();  // evict the least recently used cached prefix
  evictable_.pop_front();
  Page& p = pages_[size_t(page)];
  published_.erase(p.prefix_hash);
  p.published = false;
  p.tokens.clear();
  return page;
}

int64_t PageAllocator::match_prefix(CacheSequence& sequence, std::span<const int32_t> tokens) {
  DSV3_ASSERT(sequence.block_table.empty() && sequence.n_tokens == 0);
  uint64_t hash = 0;
  for (int64_t start = 0; start + page_size_ < int64_t(tokens.size()); start += page_size_) {
    const auto page_tokens = tokens.subspan(size_t(start), size_t(page_size_));
    hash = chain_hash(hash, page_tokens);
    auto it = published_.find(hash);
    if (it == published_.end() || !std::equal(page_tokens.begin(), page_tokens.end(),
                                              pages_[size_t(it->second)].tokens.begin()))
      break;
    hold(it->second);
    sequence.block_table.push_back(it->second);
    sequence.n_tokens += page_size_;
  }
  return sequence.n_tokens;
}

void PageAllocator::reserve(CacheSequence& sequence, int64_t n_tokens) {
  const int64_t needed = (n_tokens + page_size_ - 1) / page_size_ - int64_t(sequence.block_table.size());
  if (needed > n_available())
    fail("the KV cache is full: ", n_tokens, " tokens need ", needed, " more pages of ", page_size_, " tokens and ",
         n_available(), " are available");
  for (int64_t i = 0; i < needed; ++i) {
    const int32_t page = take_page();
    pages_[size_t(page)].holders = 1;
    sequence.block_table.push_back(page);
  }
}

void PageAllocator::publish(const CacheSequence& sequence, std::span<const int32_t> tokens) {
  uint64_t hash = 0;
  const int64_t full_pages = std::min<int64_t>(sequence.n_tokens, int64_t(tokens.size())) / page_size_;
  for (int64_t i = 0; i < full_pages; ++i) {
    const auto page_tokens = tokens.subspan(size_t(i * page_size_), size_t(page_size_));
    hash = chain_hash(hash, page_tokens);
    Page& p = pages_[size_t(sequence.block_table[size_t(i)])];
    if (p.published || published_.count(hash)) continue;  // already cached, here or in another page
    p.published = true;
    p.prefix_hash = hash;
    p.tokens.assign(page_tokens.begin(), page_tokens.end());
    published_[hash] = sequence.block_table[size_t(i)];
  }
}

void PageAllocator::release(CacheSequence& sequence) {
  for (int32_t page : sequence.block_table) {
    Page& p = pages_[size_t(page)];
    if (--p.holders > 0) continue;
    if (p.published) {
      p.lru_position = evictable_.insert(evictable_.end(), page);
    } else {
      free_.push_back(page);
    }
  }
  sequence.block_table.clear();
  sequence.n_tokens = 0;
}

}  // namespace dsv3
