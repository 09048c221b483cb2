#include "dsv3/tokenizer/utf8.h"

#include <gtest/gtest.h>

namespace dsv3 {
namespace {

constexpr size_t kValid = std::string_view::npos;

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_EQ(find_invalid_utf8(""), kValid);
  EXPECT_EQ(find_invalid_utf8("plain ASCII that is longer than eight bytes"), kValid);
  EXPECT_EQ(find_invalid_utf8("é 中 😀 \xF4\x8F\xBF\xBF"), kValid);  // U+10FFFF is the last
}

TEST(Utf8, FindsTheFirstIllFormedByte) {
  EXPECT_EQ(find_invalid_utf8("abc\xFF"), 3u);
  EXPECT_EQ(find_invalid_utf8("ab\xC0\x80"), 2u);          // overlong NUL
  EXPECT_EQ(find_invalid_utf8("\xE0\x80\xAF"), 0u);        // overlong '/'
  EXPECT_EQ(find_invalid_utf8("x\xED\xA0\x80"), 1u);       // surrogate U+D800
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);    // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("0123456789\x80"), 10u);     // lone continuation after the fast path
  EXPECT_EQ(find_invalid_utf8("end\xE4\xB8"), 3u);         // cut short
}

TEST(Utf8, LossyConversionReplacesEachMaximalIllFormedSubpart) {
  // The example of Unicode 15, section 3.9 (U+FFFD substitution of maximal subparts).
  std::string out;
  append_utf8_lossy(out, "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64");
  EXPECT_EQ(out, "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
}

TEST(Utf8, LossyConversionKeepsWellFormedText) {
  std::string out = "x";
  append_utf8_lossy(out, "é 中 😀");
  EXPECT_EQ(out, "xé 中 😀");
}

TEST(Utf8, IncompleteTailIsTheStartOfACharacterThatMoreBytesCanFinish) {
  EXPECT_EQ(incomplete_utf8_tail("abc"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("ab\xF0"), 1u);
  EXPECT_EQ(incomplete_utf8_tail("ab\xF0\x9F\x98"), 3u);
  EXPECT_EQ(incomplete_utf8_tail("\xF0\x9F\x98\x80"), 0u);  // complete
  EXPECT_EQ(incomplete_utf8_tail("a\xE4\xB8\xAD\xAD"), 0u);  // a stray continuation: nothing to wait for
  EXPECT_EQ(incomplete_utf8_tail("\xE0\x80"), 0u);          // can never become well-formed
}

TEST(Utf8, WhiteSpaceIsTheUnicodeProperty) {
  for (char32_t c : {U' ', U'\t', U'\n', U'\r', U'\v', U'\f', U'\u0085', U'\u00A0', U'\u2009', U'\u3000'})
    EXPECT_TRUE(is_white_space(c)) << uint32_t(c);
  for (char32_t c : {U'a', U'\u200B', U'\u180E', U'\uFEFF', U'\x1C'})
    EXPECT_FALSE(is_white_space(c)) << uint32_t(c);
}

}  // namespace
}  // namespace dsv3
