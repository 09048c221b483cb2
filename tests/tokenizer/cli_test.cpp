// `dsv3 tokenize` and `dsv3 detokenize`, run as a user runs them: text or JSON on stdin.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "dsv3/tokenizer/chat_template.h"
#include "support/run_dsv3.h"
#include "tokenizer/tokenizer_fixtures.h"

namespace dsv3 {
namespace {

using test::CommandResult;
using test::run_dsv3;

TEST(Cli, TokenizePrintsTheIdsAsAJsonArray) {
  const std::string text = "Hello, <｜User｜> 世界!\n";
  const CommandResult run = run_dsv3("tokenize", text);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(nlohmann::json::parse(run.out).get<std::vector<int32_t>>(),
            test::deepseek_tokenizer().encode(text));
}

TEST(Cli, DetokenizePrintsTheTextExactly) {
  const std::string text = "  two lines\r\nand a tab\t";
  const nlohmann::json ids = test::deepseek_tokenizer().encode(text);
  const CommandResult run = run_dsv3("detokenize", ids.dump());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, text);
}

TEST(Cli, TakesTheTokenizerDirectoryFromModelFlag) {
  const auto dir = test::tokenizer_fixtures() / "small" / "flags";
  const CommandResult run = run_dsv3("tokenize -m " + dir.string(), "hello world");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(nlohmann::json::parse(run.out).get<std::vector<int32_t>>(),
            Tokenizer::load(dir).encode("hello world"));
}

TEST(Cli, TokenizeChatEncodesTheRenderedConversation) {
  const nlohmann::json request = {
      {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
      {"add_generation_prompt", true}};
  const CommandResult run = run_dsv3("tokenize --chat", request.dump());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string rendered = render_chat(TokenizerConfig::load(DSV3_TOKENIZER_DIR), request);
  EXPECT_EQ(nlohmann::json::parse(run.out).get<std::vector<int32_t>>(),
            test::deepseek_tokenizer().encode(rendered));
}

TEST(Cli, InvalidUtf8IsAOneLineError) {
  const CommandResult run = run_dsv3("tokenize", "bad \xFF byte");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("not valid UTF-8"), std::string::npos) << run.err;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
}

TEST(Cli, DetokenizeRejectsInputThatIsNotAnArrayOfIds) {
  const CommandResult run = run_dsv3("detokenize", "[1, \"two\"]");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("not a JSON array of token ids"), std::string::npos) << run.err;
}

TEST(Cli, DetokenizeNamesAnUnknownId) {
  const CommandResult run = run_dsv3("detokenize", "[5, 999999]");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("token id 999999"), std::string::npos) << run.err;
}

TEST(Cli, AMissingTokenizerDirectoryIsAOneLineError) {
  const CommandResult run = run_dsv3("tokenize -m /nonexistent", "x");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("/nonexistent/tokenizer.json: cannot open"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace dsv3
