#include "cli/model_options.h"

#include "dsv3/model/model_source.h"
#include "dsv3/util/error.h"
#include "dsv3/util/log.h"

namespace dsv3::cli {

std::vector<FlagSpec> model_flags() {
  return {{"model", "m", true, "model directory or preset:NAME (demo, v2-lite, moonlight, v3); default preset:demo"},
          {"dtype", "", true, "weights of a preset: bf16 (default) or fp8"},
          {"kv-cache-tokens", "", true, "latent KV cache budget in tokens (default 16384)"},
          {"fp8-activations", "", false,
           "cuda, FP8 weights: products of over 16 rows (prefill, large decode batches) in FP8, activations "
           "quantised per token and 128 channels as DeepSeek's inference does (faster; logits further from BF16's)"}};
}

std::unique_ptr<DeepseekModel> load_model(const Args& args) {
  const std::string spec = args.get_or("model", "preset:demo");
  ModelSource source = open_model_source(spec, args.get_or("dtype", ""));
  const int64_t cache_tokens = args.get_int("kv-cache-tokens", 16384);
  if (cache_tokens <= 0) fail("flag --kv-cache-tokens must be positive, got ", cache_tokens);
  const BackendOptions options{.fp8_activations = args.has("fp8-activations")};
  auto model = std::make_unique<DeepseekModel>(source.config, source.tensors,
                                               make_backend(args.get_or("device", ""), options), cache_tokens);
  log_info("model ", spec, source.random_weights ? " (random weights)" : "", ": ", model->config().num_hidden_layers,
           " layers, hidden ", model->config().hidden_size, ", ", model->weights().n_bytes >> 20, " MiB of weights, on ",
           model->backend().name());
  return model;
}

}  // namespace dsv3::cli
