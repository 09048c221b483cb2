// `dsv3 tokenize -m DIR [--chat]`: text on stdin to a JSON array of token ids on stdout. With
// --chat, stdin is a conversation {"messages": [...], "add_generation_prompt": bool, "tools": [...]}
// that the chat template of tokenizer_config.json renders first.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "dsv3/tokenizer/chat_template.h"
#include "dsv3/tokenizer/tokenizer.h"
#include "dsv3/util/error.h"

namespace dsv3::cli {
namespace {

int run_tokenize(const Args& args) {
  const std::string dir = args.get_or("model", DSV3_TOKENIZER_DIR);
  const Tokenizer tokenizer = Tokenizer::load(dir);
  std::string input(std::istreambuf_iterator<char>(std::cin), {});
  if (args.has("chat")) {
    nlohmann::ordered_json request;
    try {
      request = nlohmann::ordered_json::parse(input);
    } catch (const nlohmann::json::exception& e) {
      fail("--chat: stdin is not a JSON conversation: ", e.what());
    }
    input = render_chat(TokenizerConfig::load(dir), request);
  }
  const std::vector<int32_t> ids = tokenizer.encode(input, /*allow_special=*/true);
  std::printf("%s\n", nlohmann::json(ids).dump().c_str());
  return 0;
}

const CommandRegistration registration{
    {"tokenize",
     "text on stdin to a JSON array of token ids (--chat: a JSON conversation)",
     {{"model", "m", true, "directory with tokenizer.json (default: the DeepSeek-V3 tokenizer)"},
      {"chat", "", false, "stdin is {\"messages\", \"add_generation_prompt\", \"tools\"}: render the chat template"}},
     run_tokenize}};

}  // namespace
}  // namespace dsv3::cli
