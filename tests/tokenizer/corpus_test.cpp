// Every document of tests/fixtures/tokenizer/corpus must encode to exactly the ids the `tokenizers`
// library gives (tests/fixtures/tokenizer/corpus_expected.json, made by
// tools/reference/make_tokenizer_fixtures.py), and decode back as it does.
#include <gtest/gtest.h>

#include "dsv3/tokenizer/incremental_decoder.h"
#include "tokenizer/tokenizer_fixtures.h"

namespace dsv3 {
namespace {

struct CorpusCase {
  std::string name;
  nlohmann::json expected;
};

// Empty when the expectations are missing; CoversEveryDocument then fails.
std::vector<CorpusCase> corpus_cases() {
  std::vector<CorpusCase> cases;
  const auto path = test::tokenizer_fixtures() / "corpus_expected.json";
  if (!std::filesystem::exists(path)) return cases;
  const nlohmann::json expected = test::read_json(path);
  for (const auto& [name, value] : expected.at("cases").items()) cases.push_back({name, value});
  return cases;
}

std::string corpus_text(const std::string& name) {
  return test::read_file(test::tokenizer_fixtures() / "corpus" / (name + ".txt"));
}

class Corpus : public testing::TestWithParam<CorpusCase> {};

TEST_P(Corpus, EncodesToTheIdsOfTokenizers) {
  EXPECT_EQ(test::deepseek_tokenizer().encode(corpus_text(GetParam().name)),
            GetParam().expected.at("ids").get<std::vector<int32_t>>());
}

TEST_P(Corpus, EncodesSpecialTokenStringsAsPlainTextWhenSpecialTokensAreNotAllowed) {
  EXPECT_EQ(test::deepseek_tokenizer().encode(corpus_text(GetParam().name), /*allow_special=*/false),
            GetParam().expected.at("ids_plain").get<std::vector<int32_t>>());
}

TEST_P(Corpus, DecodesAsTokenizers) {
  const auto ids = GetParam().expected.at("ids").get<std::vector<int32_t>>();
  EXPECT_EQ(test::deepseek_tokenizer().decode(ids), GetParam().expected.at("decoded"));
  EXPECT_EQ(test::deepseek_tokenizer().decode(ids, /*skip_special=*/true),
            GetParam().expected.at("decoded_skip"));
}

TEST_P(Corpus, RoundTripsThroughDecode) {
  const std::string text = corpus_text(GetParam().name);
  EXPECT_EQ(test::deepseek_tokenizer().decode(test::deepseek_tokenizer().encode(text)), text);
}

TEST_P(Corpus, DecodesIncrementallyToTheSameText) {
  const std::string text = corpus_text(GetParam().name);
  IncrementalDecoder decoder(test::deepseek_tokenizer());
  std::string streamed;
  for (int32_t id : test::deepseek_tokenizer().encode(text)) streamed += decoder.push(id);
  streamed += decoder.finish();
  EXPECT_EQ(streamed, text);
}

INSTANTIATE_TEST_SUITE_P(Documents, Corpus, testing::ValuesIn(corpus_cases()),
                         [](const testing::TestParamInfo<CorpusCase>& info) { return info.param.name; });

TEST(Corpus, CoversEveryDocument) {
  size_t n_documents = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::tokenizer_fixtures() / "corpus"))
    n_documents += entry.path().extension() == ".txt";
  EXPECT_EQ(corpus_cases().size(), n_documents)
      << "re-run tools/reference/make_tokenizer_fixtures.py after changing the corpus";
}

}  // namespace
}  // namespace dsv3
