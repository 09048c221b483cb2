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

  // The two ways merge_piece takes to the same result (public so that tests can hold one against
  // the other), both from one token a byte to the merged tokens, in place:
  //   merge_by_queue merges one pair at a time, the lowest (rank, position) first, from a heap.
  //   merge_by_sweeps (valid when merges_ordered()) finds the lowest rank present and merges all
  //     its occurrences in one left-to-right sweep. Long repetitive pieces ("aaaa...", "====",
  //     runs of spaces) need few sweeps and go ten times faster; varied text needs a sweep a
  //     merge, so it gives up (returns false, part-merged) once a sweep merges less than
  //     1/kSweepMinShare of the tokens, and merge_by_queue finishes.
  static constexpr size_t kMinSweepTokens = 64;
  static constexpr size_t kSweepMinShare = 8;
  bool merge_by_sweeps(std::vector<int32_t>& tokens) const;
  void merge_by_queue(std::vector<int32_t>& tokens) const;
  bool merges_ordered() const { return merges_ordered_; }
  int32_t byte_id(uint8_t byte) const { return byte_ids_[byte]; }

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

  // Whether every merge ranks above all merges that make either of its tokens (true of trained
  // merge lists). Then a merge never creates a pair ranked below itself, so HF's one-at-a-time
  // order equals rank-by-rank sweeps.
  static bool merges_are_ordered(const std::vector<std::pair<uint64_t, Merge>>& merges);

  std::unordered_map<std::string, int32_t> vocab_;
  std::array<int32_t, 256> byte_ids_{};  // the token of each single byte
  MergeTable merges_;
  bool ignore_merges_ = false;  // a piece that is itself in the vocab is one token
  bool merges_ordered_ = false;  // see merges_are_ordered
  uint64_t instance_ = 0;       // tells the per-thread word cache which Bpe filled it
};

}  // namespace dsv3
