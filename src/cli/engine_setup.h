// What `chat`, `run` and `serve` share: the model of -m running in an Engine, its tokenizer and
// chat template (the model directory's own files, or the real DeepSeek-V3 ones for presets).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cli/args.h"
#include "dsv3/engine/engine.h"
#include "dsv3/tokenizer/chat_template.h"

namespace dsv3::cli {

struct ServingModel {
  std::unique_ptr<Engine> engine;
  TokenizerConfig chat;          // chat_template, bos and eos tokens
  std::string name;              // what -m said
  bool random_weights = false;   // a preset: say so to the person using it
};

// model_flags() plus the sampling defaults flags of chat and run.
std::vector<FlagSpec> serving_flags();
ServingModel load_serving_model(const Args& args);
// Sampling and stop settings from --temperature, --top-p, --seed, --max-new-tokens.
GenerationRequest request_defaults(const Args& args);
// The ids of a conversation rendered with the chat template, ready to generate the reply.
std::vector<int32_t> encode_conversation(const ServingModel& model, const nlohmann::ordered_json& messages);

}  // namespace dsv3::cli
