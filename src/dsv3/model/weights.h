// The model's weights, bound by name from a TensorSource (a checkpoint or a preset) and checked
// against the config: every tensor the forward pass reads, with its expected shape. Linear weights
// stay in their stored format; norm weights and the router bias are small and are kept as float32
// in backend memory.
#pragma once

#include <optional>
#include <vector>

#include "dsv3/backend/backend.h"
#include "dsv3/model/config.h"
#include "dsv3/model/tensor.h"

namespace dsv3 {

struct AttentionWeights {
  std::optional<LinearWeight> q_a_proj;  // with q_lora
  ActBuffer q_a_layernorm;
  std::optional<LinearWeight> q_b_proj;
  std::optional<LinearWeight> q_proj;    // without q_lora
  LinearWeight kv_a_proj_with_mqa;       // [kv_lora_rank + qk_rope_head_dim, H]
  ActBuffer kv_a_layernorm;
  LinearWeight kv_b_proj;                // [n_heads * (qk_nope + v_head), kv_lora_rank]
  LinearWeight o_proj;
};

struct MoEWeights {
  LinearWeight gate;                               // router [n_routed_experts, H]
  std::optional<ActBuffer> e_score_correction_bias;
  std::vector<ExpertWeights> experts;
  std::optional<ExpertWeights> shared_experts;
};

struct LayerWeights {
  ActBuffer input_layernorm;
  AttentionWeights self_attn;
  ActBuffer post_attention_layernorm;
  std::optional<ExpertWeights> mlp;  // dense layers
  std::optional<MoEWeights> moe;     // MoE layers
};

// The multi-token prediction module (REFERENCE.md), stored as layer num_hidden_layers.
struct MtpWeights {
  ActBuffer enorm, hnorm;
  LinearWeight eh_proj;  // [H, 2H]
  LayerWeights layer;
  ActBuffer shared_head_norm;
  LinearWeight shared_head_head;
};

struct ModelWeights {
  TensorView embed_tokens;  // [vocab, H]
  std::vector<LayerWeights> layers;
  ActBuffer norm;
  LinearWeight lm_head;
  std::optional<MtpWeights> mtp;  // present when the source stores it
  size_t n_bytes = 0;             // bytes of all bound tensors as stored

  // Binds and checks every tensor; throws dsv3::Error naming the tensor and its source.
  static ModelWeights bind(const ModelConfig& config, const TensorSource& source, Backend& backend);
};

}  // namespace dsv3
