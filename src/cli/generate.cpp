// `dsv3 generate -m DIR --ids 1,2,3 -n N [--temperature 0] [--ignore-eos]`: prefill the prompt,
// then decode token by token through the latent cache; prints the generated ids as a JSON array.
#include <cstdio>

#include "cli/command.h"
#include "cli/model_options.h"
#include "dsv3/engine/sampler.h"
#include "dsv3/util/error.h"

namespace dsv3::cli {
namespace {

int run_generate(const Args& args) {
  const std::vector<int32_t> prompt = parse_id_list(args.require("ids"), "ids");
  const int64_t n_new = args.get_int("max-new-tokens", 16);
  if (n_new < 0) fail("flag --max-new-tokens must not be negative");
  SamplingParams sampling;
  sampling.temperature = float(args.get_double("temperature", 0.0));
  sampling.top_p = float(args.get_double("top-p", 1.0));
  sampling.top_k = args.get_int("top-k", 0);
  validate(sampling);
  const uint64_t seed = uint64_t(args.get_int("seed", 0));
  const bool ignore_eos = args.has("ignore-eos");

  auto model = load_model(args);
  CacheSequence sequence;
  std::vector<int32_t> generated;
  std::vector<int32_t> next = prompt;
  while (int64_t(generated.size()) < n_new) {
    const ForwardChunk chunk{&sequence, next};
    // Without penalties, every pick is the backend's (backend_draw).
    const TokenDraw draw = *backend_draw(sampling, draw_key(seed, generated.size()));
    const int32_t token = model->forward_picking({&chunk, 1}, {&draw, 1}, false).tokens[0];
    generated.push_back(token);
    if (!ignore_eos && token == model->config().eos_token_id) break;
    next = {token};
  }
  std::printf("[");
  for (size_t i = 0; i < generated.size(); ++i) std::printf("%s%d", i ? "," : "", generated[i]);
  std::printf("]\n");
  return 0;
}

std::vector<FlagSpec> flags() {
  std::vector<FlagSpec> f = model_flags();
  f.push_back({"ids", "", true, "comma-separated prompt token ids"});
  f.push_back({"max-new-tokens", "n", true, "tokens to generate (default 16)"});
  f.push_back({"temperature", "", true, "0 (default) is greedy"});
  f.push_back({"top-p", "", true, "nucleus sampling mass (default 1)"});
  f.push_back({"top-k", "", true, "sample among the k most likely tokens (default: all)"});
  f.push_back({"seed", "", true, "random seed for sampling (default 0)"});
  f.push_back({"ignore-eos", "", false, "keep generating after the end-of-sentence token"});
  return f;
}

const CommandRegistration registration{{"generate", "generate token ids from prompt ids", flags(), run_generate}};

}  // namespace
}  // namespace dsv3::cli
