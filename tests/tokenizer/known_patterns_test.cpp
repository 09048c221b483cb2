// The hand-written matchers of DeepSeek-V3's pre-tokenizer regexes against PCRE2 running the same
// patterns, on random text over characters chosen to hit every branch of the patterns.
#include "dsv3/tokenizer/known_patterns.h"

#include <gtest/gtest.h>

#include <random>

#include "dsv3/tokenizer/regex.h"
#include "dsv3/tokenizer/unicode_classes.h"
#include "dsv3/tokenizer/utf8.h"
#include "tokenizer/tokenizer_fixtures.h"

namespace dsv3 {
namespace {

// The patterns exactly as DeepSeek-V3's tokenizer.json has them.
std::vector<std::string> deepseek_split_patterns() {
  const nlohmann::json spec = test::read_json(std::filesystem::path(DSV3_TOKENIZER_DIR) / "tokenizer.json");
  std::vector<std::string> patterns;
  for (const nlohmann::json& step : spec.at("pre_tokenizer").at("pretokenizers"))
    if (step.at("type") == "Split") patterns.push_back(step.at("pattern").at("Regex"));
  return patterns;
}

// Letters (Latin, Cyrillic, CJK, kana, Hangul), marks, digits of several scripts, ASCII and
// Unicode punctuation and symbols, every kind of white space and newline, controls, emoji with
// joiners and selectors.
const char32_t kAlphabet[] = {
    U'a', U'Z', U'q', U'é', U'Ж', U'中', U'ぁ', U'ア', U'ー', U'가', U'\u0301', U'\u0903', U'\uFE0F',
    U'0', U'7', U'٣', U'½', U'Ⅻ', U'!', U'"', U'\'', U'-', U'.', U'/', U'@', U'[', U'\\', U'_',
    U'`', U'{', U'~', U'+', U'$', U'<', U'，', U'。', U'«', U'€', U'©', U' ', U' ', U' ', U'\t',
    U'\n', U'\r', U'\v', U'\f', U'\u0085', U'\u00A0', U'\u2009', U'\u3000', U'\u2028', U'\u180E',
    U'\u200B', U'\u200D', U'\x01', U'\x1C', U'\uFEFF', U'\U0001F600', U'\U0001F3FD', U'\uE000',
    U'龥', U'龦', U'\u30FF', U'\u3100', U'\u303F'};

std::string random_text(std::mt19937& rng, size_t n_chars) {
  std::uniform_int_distribution<size_t> pick(0, std::size(kAlphabet) - 1);
  std::string text;
  for (size_t i = 0; i < n_chars; ++i) append_utf8(text, kAlphabet[pick(rng)]);
  return text;
}

// All matches, as Regex::for_each_match reports them.
std::vector<std::pair<size_t, size_t>> matches(const Regex& regex, std::string_view text) {
  std::vector<std::pair<size_t, size_t>> found;
  regex.for_each_match(text, [&](size_t begin, size_t end) { found.emplace_back(begin, end); });
  return found;
}

TEST(KnownPatterns, RecognisesTheThreeDeepSeekPatterns) {
  const auto patterns = deepseek_split_patterns();
  ASSERT_EQ(patterns.size(), 3u);
  EXPECT_EQ(recognize_pattern(patterns[0]), KnownPattern::kDigitRuns);
  EXPECT_EQ(recognize_pattern(patterns[1]), KnownPattern::kCjkKanaRuns);
  EXPECT_EQ(recognize_pattern(patterns[2]), KnownPattern::kDeepSeekWords);
  EXPECT_EQ(recognize_pattern(R"(\p{N}{1,4})"), KnownPattern::kNone);
}

TEST(KnownPatterns, MatchExactlyWherePcre2Matches) {
  std::mt19937 rng(20261122);
  for (const std::string& pattern : deepseek_split_patterns()) {
    const Regex hand_written(pattern, false, "test");
    const Regex pcre2(pattern, false, "test", /*hand_written=*/false);
    for (int trial = 0; trial < 3000; ++trial) {
      const std::string text = random_text(rng, 1 + trial % 40);
      ASSERT_EQ(matches(hand_written, text), matches(pcre2, text))
          << "pattern " << pattern << "\ntext '" << text << "'";
    }
  }
}

TEST(UnicodeClasses, ClassifyAsPcre2Does) {
  const UnicodeClasses& classes = UnicodeClasses::get();
  EXPECT_EQ(classes.of(U'a'), kLetter);
  EXPECT_EQ(classes.of(U'中'), kLetter);
  EXPECT_EQ(classes.of(U'\u0301'), kMark);
  EXPECT_EQ(classes.of(U'٣'), kNumber);
  EXPECT_EQ(classes.of(U'，'), kPunctuation);
  EXPECT_EQ(classes.of(U'€'), kSymbol);
  EXPECT_EQ(classes.of(U'\u3000'), kWhiteSpace);
  EXPECT_EQ(classes.of(U'\U000E0100'), kMark);  // a variation selector in plane 14
  EXPECT_EQ(classes.of(U'\U0010FFFD'), 0);       // private use
}

}  // namespace
}  // namespace dsv3
