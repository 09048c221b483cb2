#include "dsv3/tokenizer/pre_tokenizer.h"

#include <algorithm>

#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

// The regex ByteLevel splits with when use_regex is set (GPT-2's).
constexpr std::string_view kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior parse_behavior(const std::string& name) {
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (name == "Contiguous") return SplitBehavior::Contiguous;
  fail("pre_tokenizer Split behavior '", name, "' is not known");
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& spec) {
  if (spec.is_null())
    fail("pre_tokenizer is null; dsv3 supports byte-level BPE, which needs ByteLevel");
  const bool sequence = spec.value("type", "") == "Sequence";
  const nlohmann::json steps = sequence ? spec.at("pretokenizers") : nlohmann::json::array({spec});

  PreTokenizer pre_tokenizer;
  bool have_byte_level = false;
  for (const nlohmann::json& step : steps) {
    const std::string type = step.value("type", "");
    if (have_byte_level)
      fail("pre_tokenizer ", type, " after ByteLevel is not supported");
    if (type == "Split") {
      const nlohmann::json& pattern = step.at("pattern");
      const bool literal = pattern.contains("String");
      const std::string source = pattern.at(literal ? "String" : "Regex").get<std::string>();
      pre_tokenizer.splits_.push_back({Regex(source, literal, "pre_tokenizer Split"),
                                       parse_behavior(step.at("behavior").get<std::string>()),
                                       step.value("invert", false)});
    } else if (type == "ByteLevel") {
      have_byte_level = true;
      pre_tokenizer.byte_level_step_ = pre_tokenizer.splits_.size();
      pre_tokenizer.add_prefix_space_ = step.value("add_prefix_space", true);
      if (step.value("use_regex", true))
        pre_tokenizer.splits_.push_back({Regex(kByteLevelPattern, false, "ByteLevel"),
                                         SplitBehavior::Isolated, false});
    } else {
      fail("pre_tokenizer type '", type,
           "' is not supported (supported: Sequence, Split, ByteLevel)");
    }
  }
  if (!have_byte_level)
    fail("pre_tokenizer has no ByteLevel step; dsv3 supports byte-level BPE only");
  return pre_tokenizer;
}

void PreTokenizer::split(const Split& split, std::string_view text,
                         std::vector<Scratch::Span>& matches, std::vector<Scratch::Span>& pieces) {
  using Span = Scratch::Span;
  pieces.clear();
  if (split.behavior == SplitBehavior::Isolated) {
    // Every match and every gap between matches is a piece (the common case: straight through).
    uint32_t previous_end = 0;
    split.pattern.for_each_match(text, [&](size_t begin, size_t end) {
      if (begin != previous_end) pieces.push_back({previous_end, uint32_t(begin), false});
      if (begin != end) pieces.push_back({uint32_t(begin), uint32_t(end), false});
      previous_end = uint32_t(end);
    });
    if (previous_end != text.size()) pieces.push_back({previous_end, uint32_t(text.size()), false});
    return;
  }

  // The text as alternating runs: the pattern's matches (is_match, flipped by invert) and the
  // gaps between them.
  matches.clear();
  uint32_t previous_end = 0;
  split.pattern.for_each_match(text, [&](size_t begin, size_t end) {
    if (begin != previous_end) matches.push_back({previous_end, uint32_t(begin), split.invert});
    matches.push_back({uint32_t(begin), uint32_t(end), !split.invert});
    previous_end = uint32_t(end);
  });
  if (previous_end != text.size())
    matches.push_back({previous_end, uint32_t(text.size()), split.invert});

  // Each behaviour folds the runs into pieces; is_match on a piece now means "remove it".
  bool previous_match = false;
  switch (split.behavior) {
    case SplitBehavior::Isolated:
      break;  // handled above
    case SplitBehavior::Removed:
      pieces = matches;
      break;
    case SplitBehavior::Contiguous:
      for (const Span& m : matches) {
        if (m.is_match == previous_match && !pieces.empty())
          pieces.back().end = m.end;
        else
          pieces.push_back({m.begin, m.end, false});
        previous_match = m.is_match;
      }
      break;
    case SplitBehavior::MergedWithPrevious:
      for (const Span& m : matches) {
        if (m.is_match && !previous_match && !pieces.empty())
          pieces.back().end = m.end;
        else
          pieces.push_back({m.begin, m.end, false});
        previous_match = m.is_match;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto m = matches.rbegin(); m != matches.rend(); ++m) {
        if (m->is_match && !previous_match && !pieces.empty())
          pieces.back().begin = m->begin;
        else
          pieces.push_back({m->begin, m->end, false});
        previous_match = m->is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  std::erase_if(pieces, [](const Span& p) { return p.is_match || p.begin == p.end; });
}

}  // namespace dsv3
