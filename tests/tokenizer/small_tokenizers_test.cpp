// Hand-written tokenizer.json files under tests/fixtures/tokenizer/small/ exercise what the
// DeepSeek tokenizer does not use: added-token flags (lstrip, rstrip, single_word, normalized),
// normalizers (Replace, Strip, Prepend), Split behaviours and inversion, ByteLevel's regex and
// prefix space, both merge spellings. Expected ids come from the `tokenizers` library.
#include <gtest/gtest.h>

#include "tokenizer/tokenizer_fixtures.h"

namespace dsv3 {
namespace {

struct SmallCase {
  std::string tokenizer;  // folder under small/
  std::string text;
  nlohmann::json expected;
  size_t index;
};

std::vector<SmallCase> small_cases(const std::string& tokenizer) {
  std::vector<SmallCase> cases;
  const auto path = test::tokenizer_fixtures() / "small" / tokenizer / "expected.json";
  if (!std::filesystem::exists(path)) return cases;  // gtest then reports the suite uninstantiated
  const nlohmann::json expected = test::read_json(path);
  for (const auto& [text, value] : expected.at("cases").items())
    cases.push_back({tokenizer, text, value, cases.size()});
  return cases;
}

const Tokenizer& small_tokenizer(const std::string& name) {
  static const Tokenizer flags = Tokenizer::load(test::tokenizer_fixtures() / "small" / "flags");
  static const Tokenizer splits = Tokenizer::load(test::tokenizer_fixtures() / "small" / "splits");
  return name == "flags" ? flags : splits;
}

class SmallTokenizer : public testing::TestWithParam<SmallCase> {};

TEST_P(SmallTokenizer, EncodesAsTokenizers) {
  const SmallCase& c = GetParam();
  EXPECT_EQ(small_tokenizer(c.tokenizer).encode(c.text), c.expected.at("ids").get<std::vector<int32_t>>());
}

TEST_P(SmallTokenizer, EncodesWithoutSpecialTokensAsTokenizers) {
  const SmallCase& c = GetParam();
  EXPECT_EQ(small_tokenizer(c.tokenizer).encode(c.text, /*allow_special=*/false),
            c.expected.at("ids_plain").get<std::vector<int32_t>>());
}

TEST_P(SmallTokenizer, DecodesAsTokenizers) {
  const SmallCase& c = GetParam();
  const auto ids = c.expected.at("ids").get<std::vector<int32_t>>();
  EXPECT_EQ(small_tokenizer(c.tokenizer).decode(ids), c.expected.at("decoded"));
  EXPECT_EQ(small_tokenizer(c.tokenizer).decode(ids, /*skip_special=*/true), c.expected.at("decoded_skip"));
}

auto case_name = [](const testing::TestParamInfo<SmallCase>& info) {
  return test::gtest_name(info.param.text, info.param.index);
};

INSTANTIATE_TEST_SUITE_P(AddedTokenFlags, SmallTokenizer, testing::ValuesIn(small_cases("flags")), case_name);
INSTANTIATE_TEST_SUITE_P(SplitBehaviours, SmallTokenizer, testing::ValuesIn(small_cases("splits")), case_name);

}  // namespace
}  // namespace dsv3
