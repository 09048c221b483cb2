// ModelConfig: the fields of a Hugging Face config.json of DeepseekV3ForCausalLM or
// DeepseekV2ForCausalLM that the forward pass needs. Parsed and validated in one place
// (config.cpp); every other file trusts it. Names follow config.json and REFERENCE.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace dsv3 {

enum class ModelFamily { DeepseekV2, DeepseekV3 };
enum class ScoringFunc { Softmax, Sigmoid };
// noaux_tc: V3's biased group-limited top-k; greedy and group_limited_greedy: the V2 family's.
enum class TopkMethod { Greedy, GroupLimitedGreedy, NoauxTc };

struct YarnScaling {
  double factor = 1.0;                              // context extension factor s
  int64_t original_max_position_embeddings = 4096;  // L, the pre-training context
  double beta_fast = 32.0;                          // ramp ends (in rotations over L)
  double beta_slow = 1.0;
  double mscale = 1.0;                              // attention temperature terms of YaRN
  double mscale_all_dim = 0.0;
  std::optional<double> attention_factor;           // overrides the cos/sin factor derived from mscale
  bool truncate = true;                             // round the ramp ends to whole pair indices
};

struct QuantizationConfig {
  std::string quant_method;     // "fp8"
  std::string fmt;              // "e4m3"
  std::string activation_scheme;  // "dynamic"
  int64_t block_out = 128;      // weight_block_size[0]
  int64_t block_in = 128;       // weight_block_size[1]
};

struct ModelConfig {
  ModelFamily family = ModelFamily::DeepseekV3;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;               // H
  int64_t intermediate_size = 0;         // dense FFN width
  int64_t moe_intermediate_size = 0;     // one expert's FFN width
  int64_t num_hidden_layers = 0;         // decoder layers, MTP layers not counted
  int64_t num_nextn_predict_layers = 0;  // MTP layers stored after the decoder layers
  int64_t num_attention_heads = 0;       // n_h
  int64_t q_lora_rank = 0;               // 0 when config.json has null: plain q_proj
  int64_t kv_lora_rank = 0;              // d_c
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t n_routed_experts = 0;          // 0: every layer dense
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t first_k_dense_replace = 0;     // layers below this are dense
  int64_t moe_layer_freq = 1;            // MoE where layer % freq == 0 (and layer >= first_k_dense_replace)
  int64_t n_group = 1;
  int64_t topk_group = 1;
  ScoringFunc scoring_func = ScoringFunc::Sigmoid;
  TopkMethod topk_method = TopkMethod::NoauxTc;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 4096;
  std::optional<YarnScaling> rope_scaling;  // only yarn is used by this family
  std::optional<QuantizationConfig> quantization_config;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool has_q_lora() const { return q_lora_rank > 0; }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }

  // Parses a config.json object; throws dsv3::Error naming the field (and `origin`) when a field is
  // missing, has the wrong type or an impossible value.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& origin = "config.json");
  static ModelConfig load(const std::filesystem::path& config_json);
  nlohmann::json to_json() const;
};

}  // namespace dsv3
