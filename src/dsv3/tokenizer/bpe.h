// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}) over raw bytes: a piece starts
// as one token a byte and adjacent tokens merge, lowest merge rank first and leftmost first among
// equal ranks, until no pair of neighbours has a merge. Results are cached per thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3 {

class Bpe {
 public:
  // From the "model" field: vocab (token -> id) and merges, as "a b" strings or ["a", "b"] pairs.
  // Throws dsv3::Error naming the field for anything dsv3 cannot reproduce exactly (dropout,
  // subword prefixes or suffixes, a merge of tokens outside the vocab, a missing byte token).
  static Bpe from_json(const nlohmann::json& model);

  // Appends the ids of one pre-tokenized piece (raw bytes).
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;

  // The vocabulary as written in tokenizer.json (tokens in the byte-level alphabet).
  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }

 private:
  // The merge of a left and a right token: its rank (priority, lower first) and the merged token.
  struct Merge {
    uint32_t rank;
    int32_t merged_id;
  };

  // Open-addressing map from a pair of token ids to their Merge.
  class MergeTable {
   public:
    static uint64_t key(int32_t left, int32_t right) {
      return uint64_t(uint32_t(left)) << 32 | uint32_t(right);
    }
    void build(const std::vector<std::pair<uint64_t, Merge>>& merges);
    const Merge* find(int32_t left, int32_t right) const;

   private:
    struct Slot {
      uint64_t key = ~0ull;  // empty
      Merge merge{};
    };
    std::vector<Slot> slots_;
    int shift_ = 64;
  };

  // BPE without the cache.
  void merge_piece(std::string_view piece, std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::array<int32_t, 256> byte_ids_{};  // the token of each single byte
  MergeTable merges_;
  bool ignore_merges_ = false;  // a piece that is itself in the vocab is one token
  uint64_t instance_ = 0;       // tells the per-thread word cache which Bpe filled it
};

}  // namespace dsv3
