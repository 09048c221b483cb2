// Splits a DeepSeek model's streamed chat output into what OpenAI clients expect: R1-style
// reasoning between <think> and </think> becomes reasoning_content, and the tool-call block
// (<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>...)
// becomes tool_calls. Text that might be the start of a marker is held back until it is not.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

struct ToolCall {
  std::string type = "function";
  std::string name;
  std::string arguments;  // JSON text, as the model wrote it
};

struct ChatDelta {
  std::string content;
  std::string reasoning;
};

class ChatOutputParser {
 public:
  // `in_reasoning`: the prompt already opened a <think> block (R1 templates end with "<think>\n").
  explicit ChatOutputParser(bool in_reasoning);

  ChatDelta push(std::string_view text);
  // The rest at the end of generation, and the tool calls, if the model made any.
  ChatDelta finish();
  const std::vector<ToolCall>& tool_calls() const { return tool_calls_; }

 private:
  ChatDelta drain(bool final);
  void parse_tool_calls();

  enum class State { Start, Reasoning, Content, ToolCalls } state_;
  std::string pending_;
  std::string tool_text_;
  std::vector<ToolCall> tool_calls_;
};

}  // namespace dsv3
