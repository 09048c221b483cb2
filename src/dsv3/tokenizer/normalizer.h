// The normalizer of tokenizer.json: what `tokenizers` does to text between added tokens before
// pre-tokenisation. DeepSeek-V3's is an empty Sequence. Supported exactly: Sequence, Prepend,
// Replace (String or Regex pattern) and Strip; any other type is a dsv3::Error naming it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv3/tokenizer/regex.h"

namespace dsv3 {

class Normalizer {
 public:
  // From the "normalizer" field (null: no normalizer).
  static Normalizer from_json(const nlohmann::json& spec);

  // True when normalize() returns its input unchanged for every text.
  bool is_identity() const { return steps_.empty(); }

  std::string normalize(std::string_view text) const;

 private:
  enum class Kind { Prepend, Replace, Strip };
  struct Step {
    Kind kind;
    std::string content;          // Prepend: the prefix; Replace: the replacement
    std::optional<Regex> pattern;  // Replace
    bool strip_left = false, strip_right = false;  // Strip
  };
  static void add_steps(const nlohmann::json& spec, std::vector<Step>& steps);

  std::vector<Step> steps_;
};

}  // namespace dsv3
