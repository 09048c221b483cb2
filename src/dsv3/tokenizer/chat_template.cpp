#include "dsv3/tokenizer/chat_template.h"

#include "dsv3/tokenizer/jinja_eval.h"
#include "dsv3/tokenizer/jinja_parser.h"
#include "dsv3/util/error.h"

namespace dsv3 {

struct ChatTemplate::Program {
  jinja::Body body;
};

ChatTemplate::ChatTemplate(const std::string& source)
    : program_(std::make_unique<Program>(Program{jinja::parse(source)})) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  return jinja::render(program_->body, context);
}

std::string render_chat(const TokenizerConfig& config, const nlohmann::ordered_json& request) {
  if (config.chat_template.empty()) fail("the tokenizer config has no chat_template");
  if (!request.is_object()) fail("a chat request must be a JSON object");
  if (!request.contains("messages") || !request["messages"].is_array()) fail("a chat request needs a \"messages\" array");
  for (const auto& m : request["messages"]) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) fail("every message needs a string \"role\"");
  }
  nlohmann::ordered_json context = request;
  // As transformers' apply_chat_template: these are always defined, tools as None when absent.
  if (!context.contains("add_generation_prompt")) context["add_generation_prompt"] = false;
  if (!context.contains("tools")) context["tools"] = nullptr;
  context["bos_token"] = config.bos_token;
  context["eos_token"] = config.eos_token;
  return ChatTemplate(config.chat_template).render(context);
}

}  // namespace dsv3
