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
  std::vector<int64_t> first_row;  // row of each chunk's first token
  std::vector<int64_t> start;      // cache position of each chunk's first token
};

// The host values of a forward pass, in the order run_step takes them.
enum StepInput { kIds, kPositions, kSlots, kDecodeItems, kDecodeTables, kOutputRows, kDraws, kStepInputs };

// The device-side views of them, for the ops.
struct DeepseekModel::StepIndices {
  std::span<const Indices> inputs;
  DecodeBatch decode;
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
  picked_ = backend_->alloc(kMaxPickedRows, 1);
}

std::vector<float> DeepseekModel::forward(std::span<const ForwardChunk> chunks, bool all_positions) {
  DSV3_ASSERT(in_flight_.empty());  // else the step collected would be an earlier one
  launch_forward(chunks, all_positions ? Output::AllLogits : Output::LastLogits);
  return finish_forward();
}

DeepseekModel::Picked DeepseekModel::forward_picking(std::span<const ForwardChunk> chunks,
                                                     std::span<const TokenDraw> draws, bool with_logits) {
  DSV3_ASSERT(in_flight_.empty());  // else the step collected would be an earlier one
  launch_picking(chunks, draws, with_logits);
  return collect_picked();
}

void DeepseekModel::launch_picking(std::span<const ForwardChunk> chunks, std::span<const TokenDraw> draws,
                                   bool with_logits) {
  DSV3_ASSERT(draws.size() == chunks.size());
  // pick_tokens hands tokens back as floats, exact below 2^24.
  if (config_.vocab_size > (int64_t(1) << 24)) fail("picking tokens takes vocabularies of up to 2^24 tokens");
  if (int64_t(chunks.size()) > kMaxPickedRows) fail("a step takes at most ", kMaxPickedRows, " sequences");
  launch_forward(chunks, with_logits ? Output::TokensAndLogits : Output::Tokens, draws);
}

DeepseekModel::Picked DeepseekModel::collect_picked() {
  DSV3_ASSERT(!in_flight_.empty());
  const bool with_logits = in_flight_.front().first == Output::TokensAndLogits;
  const size_t n_chunks = in_flight_.front().second;
  Picked picked;
  picked.rows = finish_forward();
  const int64_t width = with_logits ? config_.vocab_size + 1 : 1;
  for (size_t c = 0; c < n_chunks; ++c) picked.tokens.push_back(int32_t(picked.rows[(c + 1) * size_t(width) - 1]));
  if (with_logits)
    picked.vocab = config_.vocab_size;
  else
    picked.rows.clear();
  return picked;
}

std::vector<float> DeepseekModel::finish_forward() {
  DSV3_ASSERT(!in_flight_.empty());
  in_flight_.pop_front();
  std::vector<float> result;
  backend_->finish_step(result);
  return result;
}

void DeepseekModel::launch_forward(std::span<const ForwardChunk> chunks, Output output,
                                   std::span<const TokenDraw> draws) {
  const bool all_positions = output == Output::AllLogits;
  Batch batch{chunks, {}, {}};
  std::vector<std::vector<int32_t>> inputs(kStepInputs);
  int64_t n_decode = 0;
  for (const ForwardChunk& chunk : chunks) {
    DSV3_ASSERT(!chunk.tokens.empty());
    for (const int32_t id : chunk.tokens) {
      const bool fed = id < 0 && -1 - int64_t(id) < picked_rows_;
      if (!fed && (id < 0 || id >= config_.vocab_size))
        fail("token id ", id, " is outside the vocabulary (", config_.vocab_size, ")",
             id < 0 ? " and names none of the tokens the step before picked" : "");
    }
  }
  for (const ForwardChunk& chunk : chunks) {
    CacheSequence& sequence = *chunk.sequence;
    const int64_t start = sequence.n_tokens, n = int64_t(chunk.tokens.size());
    pages_.reserve(sequence, start + n);
    const int64_t first = int64_t(inputs[kIds].size());
    batch.first_row.push_back(first);
    batch.start.push_back(start);
    for (int64_t i = 0; i < n; ++i) {
      inputs[kIds].push_back(chunk.tokens[size_t(i)]);
      inputs[kPositions].push_back(int32_t(start + i));
      inputs[kSlots].push_back(cache_slot(cache_layout_, sequence.block_table, start + i));
    }
    if (n == 1) {
      std::vector<int32_t>& tables = inputs[kDecodeTables];
      inputs[kDecodeItems].insert(inputs[kDecodeItems].end(),
                                  {int32_t(first), int32_t(start + 1), int32_t(tables.size())});
      tables.insert(tables.end(), sequence.block_table.begin(), sequence.block_table.end());
      ++n_decode;
    }
    for (int64_t r = all_positions ? first : first + n - 1; r < first + n; ++r) inputs[kOutputRows].push_back(int32_t(r));
  }
  bool cut_draws = false;
  for (const TokenDraw& draw : draws) {
    const std::array<int32_t, TokenDraw::kPacked> packed = draw.pack();
    inputs[kDraws].insert(inputs[kDraws].end(), packed.begin(), packed.end());
    cut_draws = cut_draws || draw.cut();
  }
  // A step of decode chunks alone does the same work for every batch of its size, output and way of
  // picking: replayable, keyed by all three.
  const bool replayable = n_decode == int64_t(chunks.size()) && !all_positions;
  const uint64_t replay_key = (uint64_t(n_decode) << 2 | uint64_t(output)) << 1 | (cut_draws ? 1 : 0);
  backend_->launch_step(replayable ? std::optional<uint64_t>(replay_key) : std::nullopt, inputs,
                        [&](std::span<const Indices> device_inputs) {
                          const StepIndices step{device_inputs, {device_inputs[kDecodeItems], device_inputs[kDecodeTables], n_decode}};
                          return run_layers(batch, step, output, cut_draws);
                        });
  in_flight_.emplace_back(output, chunks.size());
  picked_rows_ = output == Output::Tokens ? int64_t(chunks.size()) : 0;
  for (const ForwardChunk& chunk : chunks) chunk.sequence->n_tokens += int64_t(chunk.tokens.size());
}

ActBuffer DeepseekModel::run_layers(const Batch& batch, const StepIndices& step, Output output, bool cut_draws) {
  Backend& be = *backend_;
  const int64_t hidden = config_.hidden_size, n = step.inputs[kIds].size;
  ActBuffer x = be.alloc(n, hidden), h = be.alloc(n, hidden), sublayer_out = be.alloc(n, hidden);
  be.embed(weights_.embed_tokens, step.inputs[kIds], picked_.view, x.view);
  const float eps = float(config_.rms_norm_eps);
  // Each residual add is fused with the norm that follows it (the next sublayer's, or the final
  // norm after the last layer); the first layer's norm has none.
  be.rmsnorm(x.view, weights_.layers.front().input_layernorm.view, eps, h.view);
  for (int64_t layer = 0; layer < config_.num_hidden_layers; ++layer) {
    const LayerWeights& lw = weights_.layers[size_t(layer)];
    const bool last_layer = layer + 1 == config_.num_hidden_layers;
    const Act& next_norm = last_layer ? weights_.norm.view : weights_.layers[size_t(layer + 1)].input_layernorm.view;
    attention(layer, batch, step, h.view, sublayer_out.view, {x.view, lw.post_attention_layernorm.view, eps, h.view});
    feed_forward(layer, h.view, sublayer_out.view, {x.view, next_norm, eps, h.view});
  }
  // The output rows rise through the step's rows (one or all of each chunk's): as many as the step
  // has are all of them in order, as in a decode step, which reads h itself instead of a copy.
  const Indices& rows = step.inputs[kOutputRows];
  const int64_t vocab = config_.vocab_size;
  ActBuffer last{Buffer(), h.view};
  if (rows.size != n) {
    last = be.alloc(rows.size, hidden);
    be.gather_rows(h.view, rows, last.view);
  }
  if (output == Output::LastLogits || output == Output::AllLogits) {
    ActBuffer logits = be.alloc(rows.size, vocab);
    be.linear(last.view, weights_.lm_head, logits.view);
    return logits;
  }
  // Logits in rows of vocab + 4 (which keeps them 16-byte aligned where the vocabulary is a multiple
  // of 4), the token beside them in column vocab when they come back too; otherwise the tokens go to
  // picked_, where the next step can take them as fed tokens.
  ActBuffer both = be.alloc(rows.size, vocab + 4);
  const Act logits = both.view.cols_slice(0, vocab);
  be.linear(last.view, weights_.lm_head, logits);
  if (output == Output::Tokens) {
    const Act tokens = picked_.view.rows_slice(0, rows.size);
    be.pick_tokens(logits, step.inputs[kDraws], cut_draws, tokens);
    return {Buffer(), tokens};
  }
  be.pick_tokens(logits, step.inputs[kDraws], cut_draws, both.view.cols_slice(vocab, 1));
  both.view = both.view.cols_slice(0, vocab + 1);
  return both;
}

void DeepseekModel::attention(int64_t layer, const Batch& batch, const StepIndices& step, const Act& h,
                              const Act& out, const ResidualNorm& then) {
  Backend& be = *backend_;
  const AttentionWeights& w = weights_.layers[size_t(layer)].self_attn;
  const int64_t n = h.rows, d_c = config_.kv_lora_rank, rope_dim = config_.qk_rope_head_dim;

  // q [n, n_heads * (qk_nope + qk_rope)], through the low-rank path when there is one, and the
  // cache row: c_kv = kv_a_layernorm(kv_a[:d_c]) and the rotated k_pe = rope(kv_a[d_c:]).
  ActBuffer q = be.alloc(n, config_.num_attention_heads * config_.qk_head_dim());
  ActBuffer kv = be.alloc(n, d_c + rope_dim);
  if (config_.has_q_lora()) {
    ActBuffer q_latent = be.alloc(n, config_.q_lora_rank);
    be.linear_pair(h, *w.q_a_proj, q_latent.view, w.kv_a_proj_with_mqa, kv.view);
    be.rmsnorm(q_latent.view, w.q_a_layernorm.view, kLatentNormEps, q_latent.view);
    be.linear(q_latent.view, *w.q_b_proj, q.view);
  } else {
    be.linear_pair(h, *w.q_proj, q.view, w.kv_a_proj_with_mqa, kv.view);
  }
  be.mla_rope_and_cache(mla_, q.view, kv.view, w.kv_a_layernorm.view, kLatentNormEps, rope_, step.inputs[kPositions],
                        cache_, cache_layout_, layer, step.inputs[kSlots]);

  ActBuffer attn = be.alloc(n, config_.num_attention_heads * config_.v_head_dim);
  for (size_t c = 0; c < batch.chunks.size(); ++c) {
    const int64_t rows = int64_t(batch.chunks[c].tokens.size()), first = batch.first_row[c];
    if (rows > 1)
      be.mla_prefill(mla_, q.view.rows_slice(first, rows), w.kv_b_proj, cache_, cache_layout_, layer,
                     *batch.chunks[c].sequence, batch.start[c], attn.view.rows_slice(first, rows));
  }
  if (step.decode.n_items > 0)
    be.mla_decode(mla_, q.view, w.kv_b_proj, cache_, cache_layout_, layer, step.decode, attn.view);
  be.linear_add_rmsnorm(attn.view, w.o_proj, out, then);
}

void DeepseekModel::expert_ffn(const ExpertWeights& w, const Act& h, const Act& out, const ResidualNorm& then) {
  Backend& be = *backend_;
  const int64_t width = w.gate_proj.out_features();
  ActBuffer gate = be.alloc(h.rows, width), up = be.alloc(h.rows, width);
  be.linear(h, w.gate_proj, gate.view);
  be.linear(h, w.up_proj, up.view);
  be.silu_mul(gate.view, up.view, gate.view);
  be.linear_add_rmsnorm(gate.view, w.down_proj, out, then);
}

void DeepseekModel::feed_forward(int64_t layer, const Act& h, const Act& out, const ResidualNorm& then) {
  Backend& be = *backend_;
  const LayerWeights& lw = weights_.layers[size_t(layer)];
  if (lw.mlp) {
    expert_ffn(*lw.mlp, h, out, then);
    return;
  }
  const MoEWeights& moe = *lw.moe;
  const MoeSublayerWeights weights{moe.gate, moe.e_score_correction_bias ? &moe.e_score_correction_bias->view : nullptr,
                                   moe.experts, moe.shared_experts ? &*moe.shared_experts : nullptr};
  be.moe_add_rmsnorm(h, weights, router_, out, then);
}

}  // namespace dsv3
