#include "dsv3/bench/prefill_flops.h"

namespace dsv3 {
namespace {

double macs(const LinearWeight& w) { return double(w.out_features()) * double(w.in_features()); }

double ffn_macs(const ExpertWeights& w) { return macs(w.gate_proj) + macs(w.up_proj) + macs(w.down_proj); }

}  // namespace

double prefill_flops(const ModelWeights& weights, const ModelConfig& config, int64_t n_tokens) {
  double per_token = 0.0;  // multiply-adds of the products each token goes through
  for (const LayerWeights& layer : weights.layers) {
    const AttentionWeights& a = layer.self_attn;
    for (const auto* w : {&a.q_a_proj, &a.q_b_proj, &a.q_proj})
      if (*w) per_token += macs(**w);
    per_token += macs(a.kv_a_proj_with_mqa) + macs(a.kv_b_proj) + macs(a.o_proj);
    if (layer.mlp) per_token += ffn_macs(*layer.mlp);
    if (layer.moe) {
      per_token += macs(layer.moe->gate) + double(config.num_experts_per_tok) * ffn_macs(layer.moe->experts.front());
      if (layer.moe->shared_experts) per_token += ffn_macs(*layer.moe->shared_experts);
    }
  }
  // Causal attention: n (n + 1) / 2 (query, key) pairs a head, each a qk-wide score and a v-wide sum.
  const double pairs = double(n_tokens) * double(n_tokens + 1) / 2.0;
  const double attention = double(config.num_hidden_layers * config.num_attention_heads) * pairs *
                           double(config.qk_head_dim() + config.v_head_dim);
  return 2.0 * (per_token * double(n_tokens) + attention + macs(weights.lm_head));
}

}  // namespace dsv3
