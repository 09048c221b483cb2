// BPE's two merge strategies (bpe.h) must agree everywhere: the sweeps that make long
// repetitive pieces fast against the one-merge-at-a-time queue that `tokenizers` uses.
#include "dsv3/tokenizer/bpe.h"

#include <gtest/gtest.h>

#include <random>

#include "tokenizer/tokenizer_fixtures.h"

namespace dsv3 {
namespace {

const Bpe& deepseek_bpe() {
  static const Bpe bpe = Bpe::from_json(
      test::read_json(std::filesystem::path(DSV3_TOKENIZER_DIR) / "tokenizer.json").at("model"));
  return bpe;
}

std::vector<int32_t> byte_tokens(const Bpe& bpe, std::string_view piece) {
  std::vector<int32_t> tokens;
  for (char b : piece) tokens.push_back(bpe.byte_id(uint8_t(b)));
  return tokens;
}

// What the sweeps give, finished by the queue when they give up, as merge_piece does.
std::vector<int32_t> by_sweeps(const Bpe& bpe, std::string_view piece) {
  std::vector<int32_t> tokens = byte_tokens(bpe, piece);
  if (!bpe.merge_by_sweeps(tokens)) bpe.merge_by_queue(tokens);
  return tokens;
}

std::vector<int32_t> by_queue(const Bpe& bpe, std::string_view piece) {
  std::vector<int32_t> tokens = byte_tokens(bpe, piece);
  bpe.merge_by_queue(tokens);
  return tokens;
}

TEST(Bpe, DeepSeekMergesAreOrdered) { EXPECT_TRUE(deepseek_bpe().merges_ordered()); }

TEST(Bpe, SweepsAndQueueAgreeOnRepetitivePieces) {
  std::string piece;
  for (std::string unit : {"a", "ha", "=", " ", "\t", "中", "😀", "-_", "Ё", "ab ", "1", "\n"}) {
    for (size_t repeats : {1, 2, 3, 7, 64, 65, 200, 1001}) {
      piece.clear();
      for (size_t i = 0; i < repeats; ++i) piece += unit;
      EXPECT_EQ(by_sweeps(deepseek_bpe(), piece), by_queue(deepseek_bpe(), piece))
          << repeats << " x '" << unit << "'";
    }
  }
}

TEST(Bpe, SweepsAndQueueAgreeOnRandomPieces) {
  const std::vector<std::string> alphabets = {"ab", "abcdefghijklmnopqrstuvwxyz", "aaaab ",
                                              "中文字的是", "=-_ .", "0123456789"};
  std::mt19937 rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    const std::string& alphabet = alphabets[trial % alphabets.size()];
    std::string piece;
    const size_t n = 64 + rng() % 600;
    while (piece.size() < n) {
      // Runs of one unit mixed with random units, in whole UTF-8 characters.
      const size_t unit = rng() % (alphabet.size() / (alphabet[0] & 0x80 ? 3 : 1));
      const size_t width = alphabet[0] & 0x80 ? 3 : 1;
      const size_t run = rng() % 4 == 0 ? 1 + rng() % 50 : 1;
      for (size_t r = 0; r < run; ++r) piece += alphabet.substr(unit * width, width);
    }
    ASSERT_EQ(by_sweeps(deepseek_bpe(), piece), by_queue(deepseek_bpe(), piece)) << piece;
  }
}

TEST(Bpe, RandomBytesAgreeToo) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    std::string piece(64 + rng() % 300, '\0');
    for (char& b : piece) b = char(rng() % 4 == 0 ? rng() % 256 : 'a' + rng() % 3);
    ASSERT_EQ(by_sweeps(deepseek_bpe(), piece), by_queue(deepseek_bpe(), piece));
  }
}

TEST(Bpe, UnorderedMergeListsUseTheQueueOnly) {
  // "b c" before the merge that makes "b": ranks out of training order.
  nlohmann::json model = test::read_json(test::tokenizer_fixtures() / "small" / "flags" / "tokenizer.json")
                             .at("model");
  model["vocab"]["bc"] = 500;
  model["vocab"]["hebc"] = 501;
  model["merges"].insert(model["merges"].begin(), "he bc");
  model["merges"].push_back("b c");
  EXPECT_FALSE(Bpe::from_json(model).merges_ordered());
}

}  // namespace
}  // namespace dsv3
