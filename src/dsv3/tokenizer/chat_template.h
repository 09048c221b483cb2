// The chat template of tokenizer_config.json, rendered by dsv3's own Jinja subset (the jinja_*
// files beside this one: lexer, parser, values, operators, filters, functions, renderer) exactly
// as transformers' apply_chat_template renders it with jinja2. Covers what the DeepSeek V2.5, V3,
// V3-0324 and R1 templates use and the common rest of jinja2; anything else is a dsv3::Error
// naming the construct.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace dsv3 {

// What tokenizer_config.json says about chat rendering.
struct TokenizerConfig {
  std::string chat_template;
  std::string bos_token;  // "<｜begin▁of▁sentence｜>"
  std::string eos_token;
  bool add_bos_token = true;

  // Reads `dir`/tokenizer_config.json; without a chat_template field there, the template comes from
  // `dir`/chat_template.jinja when present (as transformers saves it), else stays empty. Throws
  // dsv3::Error naming the file and field.
  static TokenizerConfig load(const std::filesystem::path& dir);
};

class ChatTemplate {
 public:
  // Parses the template source once; throws dsv3::Error naming an unsupported construct.
  explicit ChatTemplate(const std::string& source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders with `context` as the template's variables: {"messages": [...], "add_generation_prompt":
  // bool, "tools": [...], "bos_token": "...", "eos_token": "..."}. Objects keep their key order, as
  // Python dicts do (tojson shows it). Throws dsv3::Error for raise_exception() and for run-time
  // errors (attribute of an undefined value, bad operand types).
  std::string render(const nlohmann::ordered_json& context) const;

 private:
  struct Program;
  std::unique_ptr<Program> program_;
};

// The conversation `request` ({"messages", "add_generation_prompt", "tools"}) rendered with the
// template and special tokens of `config`: the text to encode with special tokens recognised and no
// bos token added (the template writes it). Throws dsv3::Error when `config` has no template.
std::string render_chat(const TokenizerConfig& config, const nlohmann::ordered_json& request);

}  // namespace dsv3
