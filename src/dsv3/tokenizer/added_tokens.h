// Added tokens (tokenizer.json "added_tokens"): strings such as "<｜User｜>" that are cut out of the
// text whole, before normalisation and pre-tokenisation, as `tokenizers` does: first the tokens
// with normalized=false on the raw text, then those with normalized=true on each normalized piece
// between them. Among tokens that could match, the leftmost wins, then the longest. The flags:
//   special      skipped by decode(skip_special); not cut out when special tokens are not allowed
//   single_word  only matches where no word character (Unicode \w) touches either side
//   lstrip       takes the white space on its left into the token
//   rstrip       takes the white space on its right into the token
//   normalized   matches the normalized text (its content normalized too) rather than the raw text
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv3/tokenizer/bpe.h"
#include "dsv3/tokenizer/normalizer.h"

namespace dsv3 {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
};

// A stretch of text: either plain text, or one added token (with the white space it stripped).
struct TextSegment {
  size_t begin = 0, end = 0;
  int32_t token_id = -1;  // -1: plain text
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // From the "added_tokens" array. Ids are given as `tokenizers` gives them, whatever the file
  // says: a token already in `model`'s vocab keeps that id, others are numbered on from the
  // vocab's size (a file whose ids differ gets a warning). Normalized tokens are matched in
  // `normalizer`'s form.
  AddedVocabulary(const nlohmann::json& added_tokens, const Bpe& model, const Normalizer& normalizer);

  const std::vector<AddedToken>& tokens() const { return tokens_; }

  // The text that token `index` of tokens() matches (and decodes to): its content, normalized
  // when it is a normalized token.
  const std::string& match_text(size_t index) const { return match_texts_[index]; }

  // Cuts `text` at the tokens with normalized == `normalized_pass` into `segments`. With
  // `allow_special` false, special tokens stay plain text.
  void split(std::string_view text, bool normalized_pass, bool allow_special,
             std::vector<TextSegment>& segments) const;

 private:
  // A byte trie of token texts, for leftmost-longest search.
  class Trie {
   public:
    void insert(std::string_view text, uint32_t token_index);
    bool empty() const { return nodes_.size() <= 1; }
    // The longest token text that starts at text[pos]: its length and token index, or false.
    bool longest_at(std::string_view text, size_t pos, size_t& length, uint32_t& token_index) const;
    // The first position at or after `pos` where a token text may start (text.size() if none).
    size_t next_candidate(std::string_view text, size_t pos) const;

   private:
    struct Node {
      std::vector<std::pair<uint8_t, uint32_t>> children;
      int64_t token_index = -1;
    };
    std::vector<Node> nodes_{Node{}};
    std::array<bool, 256> first_bytes_{};
    int n_first_bytes_ = 0;
    uint8_t a_first_byte_ = 0;  // the only one when n_first_bytes_ == 1
  };

  std::vector<AddedToken> tokens_;
  std::vector<std::string> match_texts_;
  Trie raw_trie_, normalized_trie_;
};

}  // namespace dsv3
