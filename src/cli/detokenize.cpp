// `dsv3 detokenize -m DIR`: a JSON array of token ids on stdin to their text on stdout.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "dsv3/tokenizer/tokenizer.h"
#include "dsv3/util/error.h"

namespace dsv3::cli {
namespace {

int run_detokenize(const Args& args) {
  const Tokenizer tokenizer = Tokenizer::load(args.get_or("model", DSV3_TOKENIZER_DIR));
  const std::string input(std::istreambuf_iterator<char>(std::cin), {});
  std::vector<int32_t> ids;
  try {
    ids = nlohmann::json::parse(input).get<std::vector<int32_t>>();
  } catch (const nlohmann::json::exception& e) {
    fail("stdin is not a JSON array of token ids: ", e.what());
  }
  const std::string text = tokenizer.decode(ids, args.has("skip-special"));
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

const CommandRegistration registration{
    {"detokenize",
     "a JSON array of token ids on stdin to their text on stdout",
     {{"model", "m", true, "directory with tokenizer.json (default: the DeepSeek-V3 tokenizer)"},
      {"skip-special", "", false, "leave special tokens out"}},
     run_detokenize}};

}  // namespace
}  // namespace dsv3::cli
