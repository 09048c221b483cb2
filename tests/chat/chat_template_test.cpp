// Every conversation of tests/fixtures/chat renders with every template there (DeepSeek-V2.5, V3,
// V3-0324, R1 as published, and a whitespace-heavy generic one) byte for byte as transformers'
// apply_chat_template renders it with jinja2, fails where it fails, and the text encodes to the ids
// of the `tokenizers` library.
#include "dsv3/tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <sstream>

#include "dsv3/tokenizer/tokenizer.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
const fs::path kChat = fs::path(DSV3_FIXTURES_DIR) / "chat";

nlohmann::ordered_json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::ordered_json::parse(in);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ChatTemplate, EveryFixtureRendersAndEncodesAsTransformers) {
  const auto conversations = read_json(kChat / "conversations.json");
  const auto cases = read_json(kChat / "expected.json");
  const size_t n_templates = size_t(std::distance(fs::directory_iterator(kChat / "templates"), fs::directory_iterator()));
  ASSERT_EQ(cases.size(), n_templates * conversations.size());
  TokenizerConfig config = TokenizerConfig::load(DSV3_TOKENIZER_DIR);
  const Tokenizer tokenizer = Tokenizer::load(DSV3_TOKENIZER_DIR);
  for (const auto& c : cases) {
    const std::string name = c["template"].get<std::string>() + " conversation " + std::to_string(c["conversation"].get<int>());
    config.chat_template = read_text(kChat / "templates" / c["template"].get<std::string>());
    const auto& conversation = conversations[c["conversation"].get<size_t>()];
    if (c.contains("error")) {
      EXPECT_THROW(render_chat(config, conversation), Error) << name << " fails in jinja2 with " << c["error"];
      continue;
    }
    const std::string text = render_chat(config, conversation);
    EXPECT_EQ(text, c["text"].get<std::string>()) << name;
    EXPECT_EQ(tokenizer.encode(text), c["ids"].get<std::vector<int32_t>>()) << name;
  }
}

TEST(ChatTemplate, TheBosTokenComesFromTheTemplateOnce) {
  const TokenizerConfig config = TokenizerConfig::load(DSV3_TOKENIZER_DIR);
  const nlohmann::ordered_json request = {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                          {"add_generation_prompt", true}};
  const std::string text = render_chat(config, request);
  EXPECT_EQ(text, "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>");
  const std::vector<int32_t> ids = Tokenizer::load(DSV3_TOKENIZER_DIR).encode(text);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 0), 1);  // 0 is <｜begin▁of▁sentence｜>
}

TEST(ChatTemplate, ARequestNeedsMessagesWithRoles) {
  const TokenizerConfig config = TokenizerConfig::load(DSV3_TOKENIZER_DIR);
  EXPECT_THROW(render_chat(config, nlohmann::ordered_json::array()), Error);
  EXPECT_THROW(render_chat(config, {{"messages", "hi"}}), Error);
  EXPECT_THROW(render_chat(config, {{"messages", {{{"content", "hi"}}}}}), Error);
}

TEST(ChatTemplate, ParsedOnceRendersManyContexts) {
  const ChatTemplate t("{% for m in messages %}{{ m.content }}{% endfor %}{{ '!' if add_generation_prompt }}");
  EXPECT_EQ(t.render({{"messages", {{{"content", "a"}}}}, {"add_generation_prompt", true}}), "a!");
  EXPECT_EQ(t.render({{"messages", {{{"content", "b"}}, {{"content", "c"}}}}}), "bc");
}

}  // namespace
}  // namespace dsv3
