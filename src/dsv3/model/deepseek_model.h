// The DeepSeek-V3 / V2 forward pass (REFERENCE.md), written once over the Backend ops.
// A forward call runs a batch of chunks, each some new tokens of one sequence: chunks of one token
// take the absorbed MLA decode path, longer chunks the expanded prefill path; the routed experts
// run once over all tokens of the batch.
#pragma once

#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "dsv3/backend/backend.h"
#include "dsv3/model/config.h"
#include "dsv3/model/page_allocator.h"
#include "dsv3/model/tensor.h"
#include "dsv3/model/weights.h"
#include "dsv3/util/token_draw.h"

namespace dsv3 {

struct ForwardChunk {
  CacheSequence* sequence = nullptr;  // its tokens go at positions sequence->n_tokens, ...
  std::span<const int32_t> tokens;
};

// A chunk's token that is the one the step launched just before picked for its chunk j, whether or
// not the host has collected it yet (DeepseekModel::launch_picking).
constexpr int32_t fed_token(int64_t j) { return int32_t(-1 - j); }

class DeepseekModel {
 public:
  // Binds the weights of `source` (kept alive by the model) and allocates a latent cache of
  // `cache_tokens` tokens.
  DeepseekModel(ModelConfig config, std::shared_ptr<const TensorSource> source, std::unique_ptr<Backend> backend,
                int64_t cache_tokens);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  Backend& backend() { return *backend_; }
  // The shapes the layers' attention and routers run with.
  const MlaShape& mla_shape() const { return mla_; }
  const RouterParams& router_params() const { return router_; }

  // Runs the chunks, stores their tokens in the cache, and returns float32 logits [rows, vocab]:
  // one row a chunk (its last token), or one a token when all_positions.
  std::vector<float> forward(std::span<const ForwardChunk> chunks, bool all_positions);
  // The same, but each chunk's next token is picked where the logits are, as draws[c] says, and
  // the logits come back only when asked for (a step some of whose requests sample on the host).
  struct Picked {
    std::vector<int32_t> tokens;  // one a chunk
    // When asked for: chunk c's logits, and its token after them, at rows[c * (vocab + 1)] (as the
    // step downloaded them).
    std::vector<float> rows;
    int64_t vocab = 0;
    std::span<const float> logits(size_t c) const {
      return std::span<const float>(rows).subspan(c * size_t(vocab + 1), size_t(vocab));
    }
  };
  Picked forward_picking(std::span<const ForwardChunk> chunks, std::span<const TokenDraw> draws, bool with_logits);
  // Every chunk's greedy next token.
  std::vector<int32_t> forward_greedy(std::span<const ForwardChunk> chunks) {
    return forward_picking(chunks, std::vector<TokenDraw>(chunks.size()), false).tokens;
  }
  // forward_picking in two halves, so that the host can launch a step before the one ahead of it
  // has finished: launch_picking queues the step (its chunks' sequences advance at once) and
  // returns, possibly before the backend has run it; collect_picked waits for the oldest step
  // launched and not collected. A step launched right after one without logits may take that step's
  // tokens as fed_token(j), which the host need not have seen.
  void launch_picking(std::span<const ForwardChunk> chunks, std::span<const TokenDraw> draws, bool with_logits);
  Picked collect_picked();
  // Steps launched and not collected.
  size_t steps_in_flight() const { return in_flight_.size(); }

  // The cache's pages: prefix reuse and release of finished sequences.
  PageAllocator& pages() { return pages_; }
  void release(CacheSequence& sequence) { pages_.release(sequence); }

 private:
  struct Batch;
  struct StepIndices;
  // What a forward pass hands back: logits of the last positions or of all, the picked tokens, or
  // both ([rows, vocab + 1], the token last).
  enum class Output { LastLogits, AllLogits, Tokens, TokensAndLogits };
  // Queues a forward pass (Backend::launch_step); finish_forward hands back the oldest one's result.
  void launch_forward(std::span<const ForwardChunk> chunks, Output output, std::span<const TokenDraw> draws = {});
  std::vector<float> finish_forward();
  // The layers and the head over the step's inputs in backend memory: what `output` names.
  ActBuffer run_layers(const Batch& batch, const StepIndices& step, Output output, bool cut_draws);
  // Each sublayer reads h, writes its output to out and ends with `then` (ResidualNorm).
  void attention(int64_t layer, const Batch& batch, const StepIndices& step, const Act& h, const Act& out,
                 const ResidualNorm& then);
  void feed_forward(int64_t layer, const Act& h, const Act& out, const ResidualNorm& then);
  void expert_ffn(const ExpertWeights& w, const Act& h, const Act& out, const ResidualNorm& then);

  ModelConfig config_;
  std::shared_ptr<const TensorSource> source_;
  std::unique_ptr<Backend> backend_;
  ModelWeights weights_;
  RopeTable rope_;
  MlaShape mla_;
  RouterParams router_;
  LatentCacheLayout cache_layout_;
  Buffer cache_;
  PageAllocator pages_;
  // The tokens the last step without logits picked, where the next step's embed reads fed tokens: one
  // block for every step, so that recorded steps find it at the same address.
  static constexpr int64_t kMaxPickedRows = 65536;
  ActBuffer picked_;
  int64_t picked_rows_ = 0;  // rows of picked_ the step launched last wrote (0: it picked none there)
  std::deque<std::pair<Output, size_t>> in_flight_;  // each launched step's output and chunks
};

}  // namespace dsv3
