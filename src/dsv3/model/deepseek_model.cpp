#include "dsv3/model/deepseek_model.h"

#include "dsv3/model/rope.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

// transformers builds q_a_layernorm and kv_a_layernorm with RMSNorm's default eps, not rms_norm_eps.
constexpr float kLatentNormEps = 1e-6f;
constexpr int64_t kPageSize = 64;  // tokens a cache page

}  // namespace

// The flattened batch: every chunk's tokens in order, and where each chunk starts.
struct DeepseekModel::Batch {
  std::span<const ForwardChunk> chunks;
  std::vector<int32_t> ids;
  std::vector<int32_t> positions;
  std::vector<int64_t> first_row;  // row of each chunk's first token
  std::vector<int64_t> start;      // cache position of each chunk's first token
};

DeepseekModel::DeepseekModel(ModelConfig config, std::shared_ptr<const TensorSource> source,
                             std::unique_ptr<Backend> backend, int64_t cache_tokens)
    : config_(std::move(config)),
      source_(std::move(source)),
      backend_(std::move(backend)),
      weights_(ModelWeights::bind(config_, *source_, *backend_)),
      pages_((cache_tokens + kPageSize - 1) / kPageSize, kPageSize) {
  const RopeFrequencies freqs = rope_frequencies(config_);
  rope_.inv_freq = backend_->upload(freqs.inv_freq, 1, int64_t(freqs.inv_freq.size()));
  rope_.attention_factor = freqs.attention_factor;
  mla_ = {config_.num_attention_heads, config_.qk_nope_head_dim, config_.qk_rope_head_dim, config_.v_head_dim,
          config_.kv_lora_rank, mla_softmax_scale(config_)};
  // transformers' V2 router, the oracle, never normalises the chosen weights (whatever
  // norm_topk_prob says) and always applies routed_scaling_factor; V3's honours norm_topk_prob.
  const bool normalise = config_.family == ModelFamily::DeepseekV3 && config_.norm_topk_prob;
  router_ = {config_.scoring_func, config_.topk_method,         config_.n_group, config_.topk_group,
             config_.num_experts_per_tok, normalise, float(config_.routed_scaling_factor)};
  cache_layout_ = {config_.num_hidden_layers, pages_.n_pages(), kPageSize, config_.kv_lora_rank,
                   config_.qk_rope_head_dim};
  cache_ = backend_->alloc_cache(cache_layout_);
}

std::vector<float> DeepseekModel::forward(std::span<const ForwardChunk> chunks, bool all_positions) {
  Backend& be = *backend_;
  const int64_t hidden = config_.hidden_size;
  Batch batch{chunks, {}, {}, {}, {}};
  for (const ForwardChunk& chunk : chunks) {
    DSV3_ASSERT(!chunk.tokens.empty());
    const int64_t start = chunk.sequence->n_tokens;
    pages_.reserve(*chunk.sequence, start + int64_t(chunk.tokens.size()));
    batch.first_row.push_back(int64_t(batch.ids.size()));
    batch.start.push_back(start);
    for (size_t i = 0; i < chunk.tokens.size(); ++i) {
      batch.ids.push_back(chunk.tokens[i]);
      batch.positions.push_back(int32_t(start + int64_t(i)));
    }
  }
  const int64_t n = int64_t(batch.ids.size());

  ActBuffer x = be.alloc(n, hidden), h = be.alloc(n, hidden), sublayer_out = be.alloc(n, hidden);
  be.embed(weights_.embed_tokens, batch.ids, x.view);
  const float eps = float(config_.rms_norm_eps);
  for (int64_t layer = 0; layer < config_.num_hidden_layers; ++layer) {
    const LayerWeights& lw = weights_.layers[size_t(layer)];
    be.rmsnorm(x.view, lw.input_layernorm.view, eps, h.view);
    attention(layer, batch, h.view, sublayer_out.view);
    be.add(x.view, sublayer_out.view);
    be.rmsnorm(x.view, lw.post_attention_layernorm.view, eps, h.view);
    feed_forward(layer, h.view, sublayer_out.view);
    be.add(x.view, sublayer_out.view);
  }
  for (size_t c = 0; c < chunks.size(); ++c) chunks[c].sequence->n_tokens += int64_t(chunks[c].tokens.size());

  std::vector<int32_t> rows;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const int64_t end = batch.first_row[c] + int64_t(chunks[c].tokens.size());
    for (int64_t r = all_positions ? batch.first_row[c] : end - 1; r < end; ++r) rows.push_back(int32_t(r));
  }
  const int64_t n_out = int64_t(rows.size());
  ActBuffer last = be.alloc(n_out, hidden), logits = be.alloc(n_out, config_.vocab_size);
  be.gather_rows(x.view, rows, last.view);
  be.rmsnorm(last.view, weights_.norm.view, eps, last.view);
  be.linear(last.view, weights_.lm_head, logits.view);
  std::vector<float> host(static_cast<size_t>(n_out * config_.vocab_size));
  be.download(logits.view, host.data());
  return host;
}

void DeepseekModel::attention(int64_t layer, const Batch& batch, const Act& h, const Act& out) {
  Backend& be = *backend_;
  const AttentionWeights& w = weights_.layers[size_t(layer)].self_attn;
  const int64_t n = h.rows, d_c = config_.kv_lora_rank, rope_dim = config_.qk_rope_head_dim;
  const int64_t qk = config_.qk_head_dim();

  // q [n, n_heads * (qk_nope + qk_rope)], through the low-rank path when there is one.
  ActBuffer q = be.alloc(n, config_.num_attention_heads * qk);
  if (config_.has_q_lora()) {
    ActBuffer q_latent = be.alloc(n, config_.q_lora_rank);
    be.linear(h, *w.q_a_proj, q_latent.view);
    be.rmsnorm(q_latent.view, w.q_a_layernorm.view, kLatentNormEps, q_latent.view);
    be.linear(q_latent.view, *w.q_b_proj, q.view);
  } else {
    be.linear(h, *w.q_proj, q.view);
  }
  // The cache row: c_kv = kv_a_layernorm(kv_a[:d_c]) and the rotated k_pe = rope(kv_a[d_c:]).
  ActBuffer kv = be.alloc(n, d_c + rope_dim);
  be.linear(h, w.kv_a_proj_with_mqa, kv.view);
  const Act c_kv = kv.view.cols_slice(0, d_c);
  be.rmsnorm(c_kv, w.kv_a_layernorm.view, kLatentNormEps, c_kv);
  be.rope(q.view, qk, config_.qk_nope_head_dim, rope_, batch.positions);
  be.rope(kv.view.cols_slice(d_c, rope_dim), rope_dim, 0, rope_, batch.positions);

  ActBuffer attn = be.alloc(n, config_.num_attention_heads * config_.v_head_dim);
  std::vector<DecodeItem> decode_items;
  for (size_t c = 0; c < batch.chunks.size(); ++c) {
    const CacheSequence& sequence = *batch.chunks[c].sequence;
    const int64_t rows = int64_t(batch.chunks[c].tokens.size()), first = batch.first_row[c];
    be.cache_write(cache_, cache_layout_, layer, sequence, batch.start[c], kv.view.rows_slice(first, rows));
    if (rows == 1) {
      decode_items.push_back({first, &sequence, batch.start[c] + 1});
    } else {
      be.mla_prefill(mla_, q.view.rows_slice(first, rows), w.kv_b_proj, cache_, cache_layout_, layer, sequence,
                     batch.start[c], attn.view.rows_slice(first, rows));
    }
  }
  if (!decode_items.empty())
    be.mla_decode(mla_, q.view, w.kv_b_proj, cache_, cache_layout_, layer, decode_items, attn.view);
  be.linear(attn.view, w.o_proj, out);
}

void DeepseekModel::expert_ffn(const ExpertWeights& w, const Act& h, const Act& out) {
  Backend& be = *backend_;
  const int64_t width = w.gate_proj.out_features();
  ActBuffer gate = be.alloc(h.rows, width), up = be.alloc(h.rows, width);
  be.linear(h, w.gate_proj, gate.view);
  be.linear(h, w.up_proj, up.view);
  be.silu_mul(gate.view, up.view, gate.view);
  be.linear(gate.view, w.down_proj, out);
}

void DeepseekModel::feed_forward(int64_t layer, const Act& h, const Act& out) {
  Backend& be = *backend_;
  const LayerWeights& lw = weights_.layers[size_t(layer)];
  if (lw.mlp) {
    expert_ffn(*lw.mlp, h, out);
    return;
  }
  const MoEWeights& moe = *lw.moe;
  const Routing routing =
      be.moe_route(h, moe.gate, moe.e_score_correction_bias ? &moe.e_score_correction_bias->view : nullptr, router_);
  be.moe_experts(h, routing, moe.experts, out);
  if (moe.shared_experts) {
    ActBuffer shared = be.alloc(h.rows, h.cols);
    expert_ffn(*moe.shared_experts, h, shared.view);
    be.add(out, shared.view);
  }
}

}  // namespace dsv3
