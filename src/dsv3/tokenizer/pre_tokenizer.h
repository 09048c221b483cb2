// The pre-tokenizer of tokenizer.json: cuts normalized text into the pieces that BPE encodes one
// at a time. Supported: a Sequence of regex or string Splits (every behaviour, inverted or not)
// ending in ByteLevel, or ByteLevel alone. DeepSeek-V3's is Split(digits in runs of 1-3),
// Split(CJK/kana runs), Split(words, punctuation, whitespace), ByteLevel(use_regex=false).
// ByteLevel's byte-to-character mapping is not applied here: BPE runs on the raw bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv3/tokenizer/regex.h"

namespace dsv3 {

// What a Split does with the parts its pattern matches (names as in tokenizer.json).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

class PreTokenizer {
 public:
  // From the "pre_tokenizer" field; throws dsv3::Error naming an unsupported type or field.
  static PreTokenizer from_json(const nlohmann::json& spec);

  // Buffers reused from piece to piece and call to call.
  struct Scratch {
    struct Span {
      uint32_t begin, end;
      bool is_match;
    };
    std::vector<std::vector<Span>> pieces;  // one list per split step
    std::vector<Span> matches;
    std::string prefixed;  // a piece with ByteLevel's prefix space
  };

  // Calls on_piece(std::string_view) for every piece of `text`, in order. The views point into
  // `text` or `scratch` and live until on_piece returns.
  template <typename OnPiece>
  void for_each_piece(std::string_view text, Scratch& scratch, OnPiece&& on_piece) const {
    if (scratch.pieces.size() < splits_.size()) scratch.pieces.resize(splits_.size());
    if (!text.empty()) visit(0, text, scratch, on_piece);
  }

 private:
  struct Split {
    Regex pattern;
    SplitBehavior behavior;
    bool invert;
  };

  template <typename OnPiece>
  void visit(size_t step, std::string_view text, Scratch& scratch, OnPiece& on_piece) const {
    if (step == byte_level_step_ && add_prefix_space_ && text.front() != ' ') {
      scratch.prefixed.assign(1, ' ');
      scratch.prefixed += text;
      text = scratch.prefixed;
    }
    if (step == splits_.size()) {
      on_piece(text);
      return;
    }
    std::vector<Scratch::Span>& pieces = scratch.pieces[step];
    split(splits_[step], text, scratch.matches, pieces);
    for (const Scratch::Span& piece : pieces)
      visit(step + 1, text.substr(piece.begin, piece.end - piece.begin), scratch, on_piece);
  }

  // The non-empty pieces of `text` under one Split, as `tokenizers` cuts them.
  static void split(const Split& split, std::string_view text, std::vector<Scratch::Span>& matches,
                    std::vector<Scratch::Span>& pieces);

  std::vector<Split> splits_;  // the Splits, then ByteLevel's own regex when use_regex is set
  size_t byte_level_step_ = 0;  // where ByteLevel starts: the index after the last Split
  bool add_prefix_space_ = false;
};

}  // namespace dsv3
