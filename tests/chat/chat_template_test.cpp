// The chat template renders exactly as transformers' apply_chat_template (jinja2 with trim_blocks and
// lstrip_blocks) for every conversation and template of tests/fixtures/chat, and the rendered text
// encodes to the ids of the `tokenizers` library; unsupported constructs and raise_exception are
// clear errors.
#include "dsv3/tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
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
  ASSERT_EQ(cases.size(), 24u);
  TokenizerConfig config = TokenizerConfig::load(DSV3_TOKENIZER_DIR);
  const Tokenizer tokenizer = Tokenizer::load(DSV3_TOKENIZER_DIR);
  for (const auto& c : cases) {
    config.chat_template = read_text(kChat / "templates" / c["template"].get<std::string>());
    const auto& conversation = conversations[c["conversation"].get<size_t>()];
    const std::string text = render_chat(config, conversation);
    EXPECT_EQ(text, c["text"].get<std::string>()) << c["template"] << " conversation " << c["conversation"];
    EXPECT_EQ(tokenizer.encode(text), c["ids"].get<std::vector<int32_t>>())
        << c["template"] << " conversation " << c["conversation"];
  }
}

TEST(ChatTemplate, TheBosTokenComesFromTheTemplateOnce) {
  const TokenizerConfig config = TokenizerConfig::load(DSV3_TOKENIZER_DIR);
  const nlohmann::ordered_json request = {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                          {"add_generation_prompt", true}};
  EXPECT_EQ(render_chat(config, request), "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>");
}

TEST(ChatTemplate, RaiseExceptionIsAnErrorWithItsMessage) {
  const ChatTemplate t("{% if messages | length == 0 %}{{ raise_exception('no messages given') }}{% endif %}");
  try {
    t.render({{"messages", nlohmann::ordered_json::array()}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no messages given"), std::string::npos);
  }
}

TEST(ChatTemplate, UnsupportedConstructsAreNamed) {
  auto message_of = [](const std::string& source) {
    try {
      ChatTemplate t(source);
      t.render({{"x", 1}});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message_of("{% macro f() %}{% endmacro %}").find("macro"), std::string::npos);
  EXPECT_NE(message_of("{{ x | wordwrap }}").find("wordwrap"), std::string::npos);
  EXPECT_NE(message_of("{% if x %}open").find("endif"), std::string::npos);
}

TEST(ChatTemplate, ExpressionsFollowPythonSemantics) {
  const ChatTemplate t(
      "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 'ab' ~ 3 }} {{ [1, 2, 3][::-1] }} {{ 'héllo'[1:3] }} "
      "{{ 'a,b,,c'.split(',') }} {{ {'k': 'v'}.get('missing', 'd') }} {{ none is none }} {{ 1 if x else 2 }} "
      "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }}{{ ',' if not loop.last }}{% endfor %} "
      "{{ '  pad ' | trim }} {{ {'b': 1, 'a': [1.5, 'é']} | tojson }}");
  EXPECT_EQ(t.render({{"x", false}}),
            "3 -4 1 ab3 [3, 2, 1] él ['a', 'b', '', 'c'] d True 2 a=1,b=2 pad {\"b\": 1, \"a\": [1.5, \"é\"]}");
}

TEST(ChatTemplate, NamespaceSurvivesLoopsButPlainSetDoesNot) {
  const ChatTemplate t(
      "{% set ns = namespace(n=0) %}{% set plain = 0 %}{% for i in range(3) %}{% set ns.n = ns.n + i %}"
      "{% set plain = plain + 1 %}{% endfor %}{{ ns.n }} {{ plain }}");
  EXPECT_EQ(t.render(nlohmann::ordered_json::object()), "3 0");
}

}  // namespace
}  // namespace dsv3
