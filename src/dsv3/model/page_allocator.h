// Hands out pages of the latent cache to sequences and takes them back, with prefix reuse:
// a page full of a known token prefix is published under the hash of that whole prefix, and a
// later sequence that starts with the same tokens (a shared system prompt, an earlier turn of the
// conversation) takes those pages instead of recomputing them. Published pages nobody holds stay
// cached until the space is needed, least recently used first.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "dsv3/backend/latent_cache.h"

namespace dsv3 {

class PageAllocator {
 public:
  PageAllocator(int64_t n_pages, int64_t page_size);

  int64_t page_size() const { return page_size_; }
  int64_t n_pages() const { return int64_t(pages_.size()); }
  // Pages a new request can get: free ones and cached ones nobody holds.
  int64_t n_available() const { return int64_t(free_.size() + evictable_.size()); }
  int64_t n_in_use() const { return n_pages() - n_available(); }

  // Gives an empty `sequence` the cached pages of the longest published prefix of `tokens`, whole
  // pages only and leaving at least one token to compute; returns the tokens covered.
  int64_t match_prefix(CacheSequence& sequence, std::span<const int32_t> tokens);
  // Adds pages to `sequence` until it can hold `n_tokens`; throws dsv3::Error when there are not
  // enough (the pages it already had stay).
  void reserve(CacheSequence& sequence, int64_t n_tokens);
  // Publishes the full pages of `sequence` whose contents are tokens[0, sequence.n_tokens).
  void publish(const CacheSequence& sequence, std::span<const int32_t> tokens);
  // Drops `sequence`'s hold on its pages and empties it.
  void release(CacheSequence& sequence);

 private:
  struct Page {
    int32_t holders = 0;
    uint64_t prefix_hash = 0;  // valid when published
    bool published = false;
    std::vector<int32_t> tokens;  // the page's tokens when published: checked on a hash match
    std::list<int32_t>::iterator lru_position;
  };
  int32_t take_page();
  void hold(int32_t page);

  int64_t page_size_;
  std::vector<Page> pages_;
  std::vector<int32_t> free_;
  std::list<int32_t> evictable_;  // published, unheld; front is least recently used
  std::unordered_map<uint64_t, int32_t> published_;  // prefix hash -> page
};

}  // namespace dsv3
