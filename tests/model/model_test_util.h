// Small random models for tests: preset-style weights over a config shrunk to test size.
#pragma once

#include <memory>
#include <vector>

#include "dsv3/backend/backend.h"
#include "dsv3/model/deepseek_model.h"
#include "dsv3/model/presets.h"
#include "support/relative_l2.h"

namespace dsv3::testing {

// A V3-architecture config with every feature (q_lora, yarn, grouped routing, dense + MoE layers)
// at a size that runs in milliseconds.
inline ModelConfig tiny_v3_config() {
  ModelConfig c = preset_config("demo", PresetDtype::Bf16);
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.moe_intermediate_size = 32;
  c.num_hidden_layers = 3;
  c.kv_lora_rank = 32;
  c.q_lora_rank = 48;
  c.max_position_embeddings = 4096 * 40;
  c.rope_scaling->original_max_position_embeddings = 64;  // so that YaRN changes the frequencies
  return c;
}

// The V2-Lite shape of routing and attention: no q_lora, softmax greedy routing.
inline ModelConfig tiny_v2_config() {
  ModelConfig c = tiny_v3_config();
  c.family = ModelFamily::DeepseekV2;
  c.q_lora_rank = 0;
  c.scoring_func = ScoringFunc::Softmax;
  c.topk_method = TopkMethod::Greedy;
  c.n_group = 1;
  c.topk_group = 1;
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 1.0;
  return c;
}

inline std::unique_ptr<DeepseekModel> make_random_model(const ModelConfig& config, PresetDtype dtype,
                                                        int64_t cache_tokens = 1024) {
  ModelConfig c = config;
  if (dtype == PresetDtype::Fp8) c.quantization_config = QuantizationConfig{"fp8", "e4m3", "dynamic", 128, 128};
  auto source = std::make_shared<PresetSource>("test", c, dtype, /*seed=*/7);
  return std::make_unique<DeepseekModel>(c, source, make_backend("cpu"), cache_tokens);
}

}  // namespace dsv3::testing
