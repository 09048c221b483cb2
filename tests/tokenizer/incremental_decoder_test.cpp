#include "dsv3/tokenizer/incremental_decoder.h"

#include <gtest/gtest.h>

#include "dsv3/tokenizer/byte_level.h"
#include "dsv3/tokenizer/utf8.h"
#include "tokenizer/tokenizer_fixtures.h"

namespace dsv3 {
namespace {

// The token that stands for one raw byte.
int32_t byte_token(uint8_t byte) { return *test::deepseek_tokenizer().token_id(byte_level_char(byte)); }

TEST(IncrementalDecoder, HoldsBackAFourByteCharacterUntilItsLastByte) {
  IncrementalDecoder decoder(test::deepseek_tokenizer());
  EXPECT_EQ(decoder.push(byte_token(0xF0)), "");
  EXPECT_EQ(decoder.push(byte_token(0x9F)), "");
  EXPECT_EQ(decoder.push(byte_token(0x98)), "");
  EXPECT_EQ(decoder.push(byte_token(0x80)), "😀");
  EXPECT_EQ(decoder.finish(), "");
}

TEST(IncrementalDecoder, EmitsTextBeforeAnUnfinishedCharacterAtOnce) {
  IncrementalDecoder decoder(test::deepseek_tokenizer());
  const std::vector<int32_t> hi = test::deepseek_tokenizer().encode("hi ");
  std::string text;
  for (int32_t id : hi) text += decoder.push(id);
  EXPECT_EQ(text, "hi ");
  EXPECT_EQ(decoder.push(byte_token(0xE4)), "");
  EXPECT_EQ(decoder.push(byte_token(0xB8)), "");
  EXPECT_EQ(decoder.push(byte_token(0xAD)), "中");
}

TEST(IncrementalDecoder, ReplacesABrokenSequenceOnceItCanNoLongerComplete) {
  IncrementalDecoder decoder(test::deepseek_tokenizer());
  EXPECT_EQ(decoder.push(byte_token(0xE4)), "");
  EXPECT_EQ(decoder.push(byte_token('a')), "\uFFFDa");
}

TEST(IncrementalDecoder, FinishFlushesAnUnfinishedCharacterAsReplacement) {
  IncrementalDecoder decoder(test::deepseek_tokenizer());
  EXPECT_EQ(decoder.push(byte_token(0xF0)), "");
  EXPECT_EQ(decoder.push(byte_token(0x9F)), "");
  EXPECT_EQ(decoder.finish(), "\uFFFD");
  EXPECT_EQ(decoder.finish(), "");
}

TEST(IncrementalDecoder, MatchesDecodeOnEveryByteBoundaryOfMultibyteText) {
  const Tokenizer& tokenizer = test::deepseek_tokenizer();
  const std::string text = "Emoji 👨‍👩‍👧‍👦 and 中文 and é";
  std::vector<int32_t> ids;
  for (char byte : text) ids.push_back(byte_token(uint8_t(byte)));  // one token a byte: worst case
  IncrementalDecoder decoder(tokenizer);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = decoder.push(id);
    EXPECT_EQ(find_invalid_utf8(piece), std::string::npos);
    streamed += piece;
  }
  streamed += decoder.finish();
  EXPECT_EQ(streamed, tokenizer.decode(ids));
  EXPECT_EQ(streamed, text);
}

TEST(IncrementalDecoder, SkipsSpecialTokensWhenAsked) {
  const Tokenizer& tokenizer = test::deepseek_tokenizer();
  IncrementalDecoder decoder(tokenizer, /*skip_special=*/true);
  EXPECT_EQ(decoder.push(*tokenizer.bos_id()), "");
  EXPECT_EQ(decoder.push(*tokenizer.token_id("Hello")), "Hello");
}

TEST(IncrementalDecoder, RejectsAnUnknownId) {
  IncrementalDecoder decoder(test::deepseek_tokenizer());
  EXPECT_THROW(decoder.push(-1), Error);
  EXPECT_THROW(decoder.push(test::deepseek_tokenizer().vocab_size()), Error);
}

}  // namespace
}  // namespace dsv3
