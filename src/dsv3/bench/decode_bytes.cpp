#include "dsv3/bench/decode_bytes.h"

namespace dsv3 {
namespace {

double ffn_bytes(const ExpertWeights& w) {
  return double(w.gate_proj.n_bytes() + w.up_proj.n_bytes() + w.down_proj.n_bytes());
}

}  // namespace

double decode_bytes_per_token(const ModelWeights& weights, const ModelConfig& config, int64_t context_tokens,
                              int64_t cache_value_bytes) {
  double bytes = double(config.hidden_size * int64_t(dtype_bytes(weights.embed_tokens.dtype)));  // one embedding row
  for (const LayerWeights& layer : weights.layers) {
    const AttentionWeights& a = layer.self_attn;
    for (const auto* w : {&a.q_a_proj, &a.q_b_proj, &a.q_proj})
      if (*w) bytes += double((*w)->n_bytes());
    bytes += double(a.kv_a_proj_with_mqa.n_bytes() + a.kv_b_proj.n_bytes() + a.o_proj.n_bytes());
    if (layer.mlp) bytes += ffn_bytes(*layer.mlp);
    if (layer.moe) {
      bytes += double(layer.moe->gate.n_bytes());
      bytes += double(config.num_experts_per_tok) * ffn_bytes(layer.moe->experts.front());
      if (layer.moe->shared_experts) bytes += ffn_bytes(*layer.moe->shared_experts);
    }
  }
  bytes += double(weights.lm_head.n_bytes());
  bytes += double(config.num_hidden_layers * context_tokens * (config.kv_lora_rank + config.qk_rope_head_dim) *
                  cache_value_bytes);
  return bytes;
}

}  // namespace dsv3
