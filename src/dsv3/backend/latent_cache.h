// The layout of the paged latent KV cache (REFERENCE.md, MLA): per layer and token, c_kv
// (kv_lora_rank values, after kv_a_layernorm) followed by the rotated k_pe (qk_rope_head_dim values).
// Tokens live in pages of `page_size`; a sequence's block table lists its pages in order.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace dsv3 {

struct LatentCacheLayout {
  int64_t n_layers = 0;
  int64_t n_pages = 0;
  int64_t page_size = 0;     // tokens a page
  int64_t kv_lora_rank = 0;  // d_c
  int64_t qk_rope_head_dim = 0;

  int64_t row_width() const { return kv_lora_rank + qk_rope_head_dim; }  // 576 for DeepSeek-V3
  int64_t page_elems() const { return page_size * row_width(); }
  int64_t layer_elems() const { return n_pages * page_elems(); }
};

// Where one sequence's tokens are: its pages, in order, and how many tokens it holds.
struct CacheSequence {
  std::vector<int32_t> block_table;
  int64_t n_tokens = 0;
};

// The cache slot of a sequence's position: its row in every layer, page * page_size + offset.
inline int32_t cache_slot(const LatentCacheLayout& layout, std::span<const int32_t> block_table, int64_t position) {
  return int32_t(block_table[size_t(position / layout.page_size)] * layout.page_size + position % layout.page_size);
}

}  // namespace dsv3
