// Loading tokenizer.json: what dsv3 cannot reproduce exactly is refused with a one-line error that
// names the file and the component.
#include <gtest/gtest.h>

#include "dsv3/tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_fixtures.h"

namespace dsv3 {
namespace {

nlohmann::json small_json() {
  return test::read_json(test::tokenizer_fixtures() / "small" / "flags" / "tokenizer.json");
}

// The message of the Error that loading `spec` throws ("" when it loads).
std::string load_error(const nlohmann::json& spec) {
  try {
    Tokenizer::from_json(spec, nullptr, "dir/tokenizer.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

testing::AssertionResult Mentions(const std::string& message, const std::string& text) {
  if (message.find(text) != std::string::npos) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "'" << message << "' does not mention '" << text << "'";
}

TEST(TokenizerLoad, LoadsTheSmallFixture) { EXPECT_EQ(load_error(small_json()), ""); }

TEST(TokenizerLoad, NamesAnUnsupportedNormalizer) {
  nlohmann::json spec = small_json();
  spec["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFKC"}}}}};
  EXPECT_TRUE(Mentions(load_error(spec), "dir/tokenizer.json: normalizer type 'NFKC' is not supported"));
}

TEST(TokenizerLoad, NamesAnUnsupportedPreTokenizer) {
  nlohmann::json spec = small_json();
  spec["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_TRUE(Mentions(load_error(spec), "pre_tokenizer type 'Whitespace' is not supported"));
}

TEST(TokenizerLoad, RequiresByteLevelPreTokenization) {
  nlohmann::json spec = small_json();
  spec["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"String", " "}}},
                                               {"behavior", "Isolated"}, {"invert", false}}}}};
  EXPECT_TRUE(Mentions(load_error(spec), "no ByteLevel step"));
}

TEST(TokenizerLoad, NamesARegexThatDoesNotCompile) {
  nlohmann::json spec = small_json();
  spec["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}},
                                               {"behavior", "Isolated"}, {"invert", false}},
                                              {{"type", "ByteLevel"}, {"add_prefix_space", false}}}}};
  EXPECT_TRUE(Mentions(load_error(spec), "cannot compile regex '(unclosed'"));
}

TEST(TokenizerLoad, NamesAnUnsupportedModel) {
  nlohmann::json spec = small_json();
  spec["model"]["type"] = "WordPiece";
  EXPECT_TRUE(Mentions(load_error(spec), "model type 'WordPiece' is not supported"));
}

TEST(TokenizerLoad, NamesAMergeOfAnUnknownToken) {
  nlohmann::json spec = small_json();
  spec["model"]["merges"].push_back("Ġ zzz");
  EXPECT_TRUE(Mentions(load_error(spec), "token 'zzz' is not in model.vocab"));
}

TEST(TokenizerLoad, NamesAMalformedMerge) {
  nlohmann::json spec = small_json();
  spec["model"]["merges"].push_back("a b c");
  EXPECT_TRUE(Mentions(load_error(spec), "is not two tokens separated by one space"));
}

TEST(TokenizerLoad, RefusesBpeDropout) {
  nlohmann::json spec = small_json();
  spec["model"]["dropout"] = 0.1;
  EXPECT_TRUE(Mentions(load_error(spec), "model.dropout"));
}

TEST(TokenizerLoad, RequiresATokenForEveryByte) {
  nlohmann::json spec = small_json();
  spec["model"]["vocab"].erase("Ā");  // byte 0
  EXPECT_TRUE(Mentions(load_error(spec), "no token for byte 0"));
}

TEST(TokenizerLoad, NamesAMissingFile) {
  try {
    Tokenizer::load("/nonexistent/dir");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(Mentions(std::string(e.what()), "/nonexistent/dir/tokenizer.json: cannot open"));
  }
}

TEST(TokenizerLoad, ReadsBosAndEosFromTheConfig) {
  const nlohmann::json config = {{"bos_token", "<|sp|>"},
                                 {"eos_token", {{"content", "<|r|>"}, {"lstrip", false}}}};
  const Tokenizer tokenizer = Tokenizer::from_json(small_json(), config, "t");
  EXPECT_EQ(tokenizer.bos_id(), tokenizer.token_id("<|sp|>"));
  EXPECT_EQ(tokenizer.eos_id(), tokenizer.token_id("<|r|>"));
}

TEST(TokenizerLoad, NamesAConfigTokenThatIsNotInTheVocabulary) {
  try {
    Tokenizer::from_json(small_json(), {{"bos_token", "<s>"}}, "t");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(Mentions(std::string(e.what()), "bos_token '<s>' is not a token"));
  }
}

}  // namespace
}  // namespace dsv3
