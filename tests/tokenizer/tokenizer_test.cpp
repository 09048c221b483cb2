// The Tokenizer's interface on the real DeepSeek-V3 tokenizer. Exact ids for real text are the
// corpus test's job (corpus_test.cpp); these pin the contract around them.
#include "dsv3/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <thread>

#include "tokenizer/tokenizer_fixtures.h"

namespace dsv3 {
namespace {

const Tokenizer& tokenizer() { return test::deepseek_tokenizer(); }

TEST(Tokenizer, KnowsTheDeepSeekVocabulary) {
  EXPECT_EQ(tokenizer().vocab_size(), 128815);
  EXPECT_EQ(tokenizer().bos_id(), 0);
  EXPECT_EQ(tokenizer().eos_id(), 1);
  EXPECT_EQ(tokenizer().token_id("<｜User｜>"), 128803);
  EXPECT_EQ(tokenizer().token_id("<｜Assistant｜>"), 128804);
  EXPECT_EQ(tokenizer().token_id("no such token"), std::nullopt);
}

TEST(Tokenizer, EncodesTheEmptyTextAsNoTokens) { EXPECT_TRUE(tokenizer().encode("").empty()); }

TEST(Tokenizer, NeverAddsABosToken) {
  EXPECT_NE(tokenizer().encode("Hello").front(), *tokenizer().bos_id());
}

TEST(Tokenizer, EncodesAWordOfTheVocabularyAsThatToken) {
  EXPECT_EQ(tokenizer().encode("Hello"), std::vector<int32_t>{*tokenizer().token_id("Hello")});
  EXPECT_EQ(tokenizer().encode(" world"), std::vector<int32_t>{*tokenizer().token_id("Ġworld")});
}

TEST(Tokenizer, CutsSpecialTokenStringsOutWhole) {
  const std::vector<int32_t> ids = tokenizer().encode("<｜User｜>Hi<｜Assistant｜>");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], 128803);
  EXPECT_EQ(ids[1], *tokenizer().token_id("Hi"));
  EXPECT_EQ(ids[2], 128804);
}

TEST(Tokenizer, EncodesSpecialTokenStringsAsTextWhenNotAllowed) {
  const std::vector<int32_t> ids = tokenizer().encode("<｜begin▁of▁sentence｜>", /*allow_special=*/false);
  EXPECT_GT(ids.size(), 1u);
  for (int32_t id : ids) EXPECT_FALSE(tokenizer().is_special(id));
  EXPECT_EQ(tokenizer().decode(ids), "<｜begin▁of▁sentence｜>");
}

TEST(Tokenizer, CutsOutAddedTokensThatAreNotSpecialEvenWhenSpecialTokensAreNotAllowed) {
  // DeepSeek-V3 marks <｜User｜>, <｜Assistant｜> and the tool tokens special: false.
  EXPECT_FALSE(tokenizer().is_special(128803));
  EXPECT_EQ(tokenizer().encode("<｜User｜>", /*allow_special=*/false), std::vector<int32_t>{128803});
}

TEST(Tokenizer, DecodeCanSkipSpecialTokens) {
  const std::vector<int32_t> ids = tokenizer().encode("<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>");
  EXPECT_EQ(tokenizer().decode(ids), "<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>");
  EXPECT_EQ(tokenizer().decode(ids, /*skip_special=*/true), "Hi");
}

TEST(Tokenizer, DecodesAnIncompleteCharacterAsReplacementCharacter) {
  const int32_t byte_e4 = *tokenizer().token_id("ä");  // the byte 0xE4, first of three of "中"
  EXPECT_EQ(tokenizer().token_bytes(byte_e4), "\xE4");
  EXPECT_EQ(tokenizer().decode(std::vector<int32_t>{byte_e4}), "\uFFFD");
}

TEST(Tokenizer, RejectsInvalidUtf8WithItsByteOffset) {
  try {
    tokenizer().encode("valid then \xC3\x28");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 (at byte 11"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, RejectsAnUnknownIdInDecode) {
  const std::vector<int32_t> ids = {1, 200000};
  try {
    tokenizer().decode(ids);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 200000"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, EncodesTheSameOnManyThreadsAtOnce) {
  const std::string text = test::read_file(test::tokenizer_fixtures() / "corpus" / "mixed_scripts.txt");
  const std::vector<int32_t> expected = tokenizer().encode(text);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) mismatches[t] += tokenizer().encode(text) != expected;
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(Tokenizer, GivesTheSameIdsWithAColdAndAWarmWordCache) {
  // A second Tokenizer empties this thread's cache, so the first encode after it merges afresh.
  const std::string text = test::read_file(test::tokenizer_fixtures() / "corpus" / "english_prose.txt");
  const std::vector<int32_t> warm = tokenizer().encode(text);
  const Tokenizer fresh = Tokenizer::load(DSV3_TOKENIZER_DIR);
  EXPECT_EQ(fresh.encode(text), warm);
  EXPECT_EQ(tokenizer().encode(text), warm);
}

}  // namespace
}  // namespace dsv3
