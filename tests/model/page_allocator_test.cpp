// Paging and prefix reuse of the latent cache: pages are shared only for whole published prefixes,
// unheld cached pages are evicted least recently used first, and a full cache is a clear error.
#include "dsv3/model/page_allocator.h"

#include <gtest/gtest.h>

#include <numeric>

#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

std::vector<int32_t> tokens(int32_t first, int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// A sequence that has computed all of `toks` and published them.
CacheSequence computed(PageAllocator& pages, const std::vector<int32_t>& toks) {
  CacheSequence s;
  pages.reserve(s, int64_t(toks.size()));
  s.n_tokens = int64_t(toks.size());
  pages.publish(s, toks);
  return s;
}

TEST(PageAllocator, ReservesWholePagesAndFailsClearlyWhenFull) {
  PageAllocator pages(4, 16);
  CacheSequence a;
  pages.reserve(a, 33);
  EXPECT_EQ(a.block_table.size(), 3u);
  CacheSequence b;
  EXPECT_THROW(pages.reserve(b, 17), Error);
  pages.release(a);
  EXPECT_EQ(pages.n_available(), 4);
}

TEST(PageAllocator, SharedPrefixReusesWholePagesOnly) {
  PageAllocator pages(8, 16);
  const std::vector<int32_t> first = tokens(0, 40);
  CacheSequence a = computed(pages, first);

  std::vector<int32_t> second = tokens(0, 36);  // same first 36 tokens: 2 full pages shared
  second.push_back(999);
  CacheSequence b;
  EXPECT_EQ(pages.match_prefix(b, second), 32);
  EXPECT_EQ(b.block_table[0], a.block_table[0]);
  EXPECT_EQ(b.block_table[1], a.block_table[1]);
}

TEST(PageAllocator, PrefixMatchLeavesAtLeastOneTokenToCompute) {
  PageAllocator pages(8, 16);
  CacheSequence a = computed(pages, tokens(0, 32));
  CacheSequence b;
  EXPECT_EQ(pages.match_prefix(b, tokens(0, 32)), 16);
}

TEST(PageAllocator, DifferentEarlierTokensPreventReuse) {
  PageAllocator pages(8, 16);
  CacheSequence a = computed(pages, tokens(0, 48));
  std::vector<int32_t> other = tokens(0, 48);
  other[3] = 777;  // page 0 differs, so pages 1 and 2 hold a different prefix too
  CacheSequence b;
  EXPECT_EQ(pages.match_prefix(b, other), 0);
}

TEST(PageAllocator, ReleasedPrefixStaysCachedUntilEvicted) {
  PageAllocator pages(2, 16);
  CacheSequence a = computed(pages, tokens(0, 32));
  pages.release(a);
  EXPECT_EQ(pages.n_available(), 2);
  CacheSequence b;
  EXPECT_EQ(pages.match_prefix(b, tokens(0, 33)), 32);  // still cached
  pages.release(b);

  CacheSequence c;
  pages.reserve(c, 32);  // needs both pages: evicts the cached prefix
  pages.release(c);
  CacheSequence d;
  EXPECT_EQ(pages.match_prefix(d, tokens(0, 33)), 0);
}

}  // namespace
}  // namespace dsv3
