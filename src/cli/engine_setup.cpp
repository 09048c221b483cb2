#include "cli/engine_setup.h"

#include <filesystem>

#include "cli/model_options.h"
#include "dsv3/util/error.h"

namespace dsv3::cli {

std::vector<FlagSpec> serving_flags() {
  std::vector<FlagSpec> f = model_flags();
  f.push_back({"max-new-tokens", "n", true, "tokens to generate at most for each answer (default 512)"});
  f.push_back({"temperature", "", true, "sampling temperature, 0 is greedy (default 0.6)"});
  f.push_back({"top-p", "", true, "nucleus sampling mass (default 0.95)"});
  f.push_back({"seed", "", true, "random seed, for reproducible sampling"});
  f.push_back({"system", "", true, "a system prompt to start every conversation with"});
  return f;
}

ServingModel load_serving_model(const Args& args) {
  ServingModel m;
  m.name = args.get_or("model", "preset:demo");
  m.random_weights = m.name.rfind("preset:", 0) == 0;
  const std::filesystem::path tokenizer_dir =
      m.random_weights ? std::filesystem::path(DSV3_TOKENIZER_DIR) : std::filesystem::path(m.name);
  auto tokenizer = std::make_shared<const Tokenizer>(Tokenizer::load(tokenizer_dir));
  m.chat = TokenizerConfig::load(tokenizer_dir);
  m.engine = std::make_unique<Engine>(load_model(args), std::move(tokenizer));
  return m;
}

GenerationRequest request_defaults(const Args& args) {
  GenerationRequest r;
  r.sampling.temperature = float(args.get_double("temperature", 0.6));
  r.sampling.top_p = float(args.get_double("top-p", 0.95));
  if (args.has("seed")) r.sampling.seed = uint64_t(args.get_int("seed", 0));
  validate(r.sampling);
  r.stop.max_tokens = args.get_int("max-new-tokens", 512);
  if (r.stop.max_tokens < 1) fail("flag --max-new-tokens must be at least 1");
  return r;
}

std::vector<int32_t> encode_conversation(const ServingModel& model, const nlohmann::ordered_json& messages) {
  const nlohmann::ordered_json request = {{"messages", messages}, {"add_generation_prompt", true}};
  return model.engine->tokenizer().encode(render_chat(model.chat, request), /*allow_special=*/true);
}

}  // namespace dsv3::cli
