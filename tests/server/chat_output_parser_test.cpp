// Reasoning and tool calls are split out of the model's text the same way whether it arrives whole
// or one character at a time, as streaming delivers it.
#include "dsv3/server/chat_output_parser.h"

#include <gtest/gtest.h>

namespace dsv3 {
namespace {

struct Parsed {
  std::string content, reasoning;
  std::vector<ToolCall> calls;
};

Parsed parse(const std::string& text, bool in_reasoning, size_t piece) {
  ChatOutputParser p(in_reasoning);
  Parsed out;
  for (size_t i = 0; i < text.size(); i += piece) {
    const ChatDelta d = p.push(text.substr(i, piece));
    out.content += d.content;
    out.reasoning += d.reasoning;
  }
  const ChatDelta d = p.finish();
  out.content += d.content;
  out.reasoning += d.reasoning;
  out.calls = p.tool_calls();
  return out;
}

TEST(ChatOutputParser, SplitsThinkBlockIntoReasoning) {
  for (size_t piece : {1, 3, 1000}) {
    const Parsed p = parse("<think>\nstep one\n</think>\n\nThe answer.", false, piece);
    EXPECT_EQ(p.reasoning, "\nstep one\n") << piece;
    EXPECT_EQ(p.content, "\n\nThe answer.") << piece;
  }
}

TEST(ChatOutputParser, PromptThatOpenedThinkingStartsInReasoning) {
  const Parsed p = parse("hmm</think>ok", true, 1);
  EXPECT_EQ(p.reasoning, "hmm");
  EXPECT_EQ(p.content, "ok");
}

TEST(ChatOutputParser, PlainTextIsContent) {
  const Parsed p = parse("<thin is not a tag", false, 1);
  EXPECT_EQ(p.content, "<thin is not a tag");
  EXPECT_TRUE(p.reasoning.empty());
}

TEST(ChatOutputParser, ToolCallBlockBecomesToolCalls) {
  const std::string text =
      "Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
      "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
      "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  for (size_t piece : {1, 7, 10000}) {
    const Parsed p = parse(text, false, piece);
    EXPECT_EQ(p.content, "Checking.") << piece;
    ASSERT_EQ(p.calls.size(), 2u) << piece;
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].arguments, "{\"city\": \"Paris\"}");
    EXPECT_EQ(p.calls[1].name, "get_time");
    EXPECT_EQ(p.calls[1].arguments, "{}");
  }
}

}  // namespace
}  // namespace dsv3
