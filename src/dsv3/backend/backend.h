// The backend seam (DESIGN.md): the coarse ops the DeepSeek forward pass is written against.
// CPU and CUDA implement the same ops; the model never touches activation memory itself.
// Shapes in comments are [rows, cols] of Act views; all views are row-major.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dsv3/backend/buffer.h"
#include "dsv3/backend/latent_cache.h"
#include "dsv3/backend/linear_weight.h"
#include "dsv3/model/config.h"

namespace dsv3 {

// Rotary embedding of one model: inv_freq per rotated pair (YaRN-blended where configured) and the
// factor YaRN multiplies cos and sin by. Pairs are consecutive elements (2i, 2i+1) (REFERENCE.md).
struct RopeTable {
  ActBuffer inv_freq;  // [1, rope_dim / 2]
  float attention_factor = 1.0f;
};

struct MlaShape {
  int64_t n_heads = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t kv_lora_rank = 0;
  float softmax_scale = 0.0f;  // 1/sqrt(qk_nope + qk_rope), times mscale^2 under YaRN

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

// int32 values an op reads (token ids, positions, cache slots, decode items, block tables): in
// backend memory, put there once a forward pass by run_step.
struct Indices {
  const int32_t* data = nullptr;
  int64_t size = 0;
  // The most values any replay of a recorded step brings here (a step is replayed while inputs
  // that grow, the block tables, fit the room it was recorded with); 0 where the step runs once.
  int64_t room = 0;
};

// The sequences of a decode step as mla_decode reads them.
struct DecodeBatch {
  // Three values an item: its query row, the tokens it attends to (this step's included), and where
  // its block table starts in `tables`.
  Indices items;
  Indices tables;  // the items' block tables, one after another
  int64_t n_items = 0;
};

struct RouterParams {
  ScoringFunc scoring_func = ScoringFunc::Sigmoid;
  TopkMethod topk_method = TopkMethod::NoauxTc;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  int64_t top_k = 1;
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;
};

struct ExpertWeights {
  LinearWeight gate_proj, up_proj, down_proj;
};

// A MoE sublayer's weights as moe_add_rmsnorm takes them (views; the model owns them).
struct MoeSublayerWeights {
  const LinearWeight& gate;
  const Act* e_score_correction_bias = nullptr;  // or null
  std::span<const ExpertWeights> experts;
  const ExpertWeights* shared = nullptr;  // or null
};

// The experts chosen for each token and their weights: int32 ids and float weights, [n_tokens, top_k].
struct Routing {
  Buffer expert_ids;
  Buffer expert_weights;
  int64_t n_tokens = 0;
  int64_t top_k = 0;
  Buffer plan;  // the backend's own: the pairs as its router sorted them for moe_experts, or empty
};

// What follows each sublayer (attention, FFN): residual += its output, then normed =
// rmsnorm(residual) with weight and eps, the next sublayer's input. The ops that end a sublayer take
// it along (linear_add_rmsnorm, moe_experts_add_rmsnorm) so that a backend may fuse it in.
struct ResidualNorm {
  Act residual;
  Act weight;
  float eps = 0.0f;
  Act normed;  // may alias the sublayer's input
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Memory.
  virtual ActBuffer alloc(int64_t rows, int64_t cols) = 0;
  virtual ActBuffer upload(std::span<const float> values, int64_t rows, int64_t cols) = 0;
  virtual void download(const Act& src, float* dst) = 0;  // rows * cols floats, row-major
  virtual Buffer alloc_cache(const LatentCacheLayout& layout) = 0;
  // Bytes of one cached value: what decode attention reads a value (float32 on the CPU, BF16 on CUDA).
  virtual int64_t cache_value_bytes() const = 0;
  // A stored weight where this backend's ops read it: the CPU reads it in place (memory-mapped);
  // CUDA copies it to device memory once and returns a view of the copy, owned by the backend.
  virtual TensorView place(const TensorView& stored) { return stored; }

  // A forward pass: puts `inputs` (host values) in backend memory, runs `body` over them, and
  // downloads the matrix it returns into `result` (resized to rows * cols). Given a `replay_key`, a
  // backend may record the body's ops and, at a later call with that key and inputs of the same sizes,
  // replay the record over the new inputs without running the body (CUDA graphs): the body must then
  // do the same work every time for one key and take host values only through `inputs`.
  using StepBody = std::function<ActBuffer(std::span<const Indices> inputs)>;
  void run_step(std::optional<uint64_t> replay_key, std::span<const std::vector<int32_t>> inputs,
                const StepBody& body, std::vector<float>& result) {
    launch_step(replay_key, inputs, body);
    finish_step(result);
  }
  // run_step in two halves, so that the host can launch the next step while this one runs (a GPU
  // would otherwise idle through the host's launch of every step): launch_step queues the step and
  // its result's download and may return before they are done; finish_step waits for the oldest step
  // launched and not finished yet and hands back its result. This version runs the step in
  // launch_step. `inputs` and `body` are used within launch_step only.
  virtual void launch_step(std::optional<uint64_t> replay_key, std::span<const std::vector<int32_t>> inputs,
                           const StepBody& body);
  virtual void finish_step(std::vector<float>& result);

  // The read bandwidth of the memory the weights live in, measured now, in bytes a second.
  virtual double measure_read_bandwidth() = 0;
  // The rate of a large BF16 matrix product, measured now, in FLOP/s: what prefill's products run
  // against. This version times linear(); a backend with a faster raw product times that instead.
  virtual double measure_matmul_rate();

  // out[i] = table[ids[i]] (table [vocab, H] in its stored dtype). An id of -1 - j stands for the
  // token in row j of `fed` ([rows, 1], ids as floats: what pick_tokens wrote in a step before), so
  // that a step can go on from tokens the host has not seen yet.
  virtual void embed(const TensorView& table, const Indices& ids, const Act& fed, const Act& out) = 0;
  // out[r] = rows[r] of x for r in `rows`.
  virtual void gather_rows(const Act& x, const Indices& rows, const Act& out) = 0;
  // out[r] (out [rows, 1]) = the token row r of `logits` picks as TokenDraw r of `draws` says
  // (TokenDraw::kPacked values a row, TokenDraw::pack), as a float (exact below 2^24): a step's next
  // tokens, chosen where the logits are. cut_rows: some draw is cut by top_p or min_p (a backend may
  // take a slower way for all rows then).
  virtual void pick_tokens(const Act& logits, const Indices& draws, bool cut_rows, const Act& out) = 0;
  // out = weight * x / sqrt(mean(x^2) + eps), per row; out may alias x.
  virtual void rmsnorm(const Act& x, const Act& weight, float eps, const Act& out) = 0;
  // x += y, then out = rmsnorm(x): the residual add ahead of a layer's norm, fused where a backend can.
  virtual void add_rmsnorm(const Act& x, const Act& y, const Act& weight, float eps, const Act& out) {
    add(x, y);
    rmsnorm(x, weight, eps, out);
  }
  // out = x W^T over a weight in its stored format.
  virtual void linear(const Act& x, const LinearWeight& w, const Act& out) = 0;
  // out_a = x W_a^T and out_b = x W_b^T: two products of one input (a layer's query and latent KV
  // projections), in one pass where a backend can.
  virtual void linear_pair(const Act& x, const LinearWeight& w_a, const Act& out_a, const LinearWeight& w_b,
                           const Act& out_b) {
    linear(x, w_a, out_a);
    linear(x, w_b, out_b);
  }
  // linear(x, w, out), then `then` with out as the sublayer's output.
  virtual void linear_add_rmsnorm(const Act& x, const LinearWeight& w, const Act& out, const ResidualNorm& then) {
    linear(x, w, out);
    add_rmsnorm(then.residual, out, then.weight, then.eps, then.normed);
  }
  // x += y.
  virtual void add(const Act& x, const Act& y) = 0;
  // out = silu(gate) * up.
  virtual void silu_mul(const Act& gate, const Act& up, const Act& out) = 0;
  // Rotates, in place, elements [offset, offset + rope_dim) of each head_dim-wide head of every row
  // of x, row r at position positions[r].
  virtual void rope(const Act& x, int64_t head_dim, int64_t offset, const RopeTable& table,
                    const Indices& positions) = 0;

  // MLA over the latent cache.
  // Stores rows [n, kv_lora_rank + qk_rope] (c_kv, rotated k_pe), row i in cache slot slots[i]
  // (cache_slot()).
  virtual void cache_write(const Buffer& cache, const LatentCacheLayout& layout, int64_t layer, const Indices& slots,
                           const Act& rows) = 0;
  // The attention inputs of n tokens after their projections, q [n, n_heads * qk_head_dim] and kv
  // [n, kv_lora_rank + qk_rope]: c_kv = kv[:, :kv_lora_rank] normalised by kv_norm (eps), k_pe (the
  // rest of kv) and every head's q_pe rotated, all in place, at positions[r]; then row r of kv goes to
  // cache slot slots[r] (cache_write). One pass where a backend can fuse it.
  virtual void mla_rope_and_cache(const MlaShape& shape, const Act& q, const Act& kv, const Act& kv_norm, float eps,
                                  const RopeTable& rope, const Indices& positions, const Buffer& cache,
                                  const LatentCacheLayout& layout, int64_t layer, const Indices& slots);
  // Expanded form: q [n, n_heads * qk_head_dim] for positions start..start+n-1 of `sequence`
  // attends causally to cache positions 0..start+n-1, whose k_nope and v come from kv_b_proj(c_kv).
  // out [n, n_heads * v_head_dim].
  virtual void mla_prefill(const MlaShape& shape, const Act& q, const LinearWeight& kv_b_proj,
                           const Buffer& cache, const LatentCacheLayout& layout, int64_t layer,
                           const CacheSequence& sequence, int64_t start, const Act& out) = 0;
  // Absorbed form (REFERENCE.md): one query row a sequence, scores against c_kv through W_uk and
  // values mapped back through W_uv, never expanding the cache.
  virtual void mla_decode(const MlaShape& shape, const Act& q, const LinearWeight& kv_b_proj,
                          const Buffer& cache, const LatentCacheLayout& layout, int64_t layer,
                          const DecodeBatch& batch, const Act& out) = 0;

  // DeepSeekMoE.
  // Router: scores from gate (float32), expert selection per RouterParams, weights of the chosen.
  virtual Routing moe_route(const Act& x, const LinearWeight& gate, const Act* e_score_correction_bias,
                            const RouterParams& params) = 0;
  // out = sum over each token's chosen experts of weight * down(silu(gate(x)) * up(x)), plus, when
  // `shared` is given, the shared experts' FFN of every token (one FFN of their joint width) with
  // weight 1: the routed sum first, the shared term added last.
  virtual void moe_experts(const Act& x, const Routing& routing, std::span<const ExpertWeights> experts,
                           const ExpertWeights* shared, const Act& out) = 0;
  // moe_experts(), then `then` with out as the sublayer's output.
  virtual void moe_experts_add_rmsnorm(const Act& x, const Routing& routing, std::span<const ExpertWeights> experts,
                                       const ExpertWeights* shared, const Act& out, const ResidualNorm& then) {
    moe_experts(x, routing, experts, shared, out);
    add_rmsnorm(then.residual, out, then.weight, then.eps, then.normed);
  }
  // The whole sublayer: moe_route, then moe_experts_add_rmsnorm on its choice, as one op, so that a
  // backend may route where the experts run instead of handing a Routing from one op to the next.
  virtual void moe_add_rmsnorm(const Act& x, const MoeSublayerWeights& moe, const RouterParams& params, const Act& out,
                               const ResidualNorm& then) {
    const Routing routing = moe_route(x, moe.gate, moe.e_score_correction_bias, params);
    moe_experts_add_rmsnorm(x, routing, moe.experts, moe.shared, out, then);
  }

 private:
  std::deque<std::vector<float>> finished_results_;  // of the steps this version ran in launch_step
};

// How a backend computes, where the user chooses (flags of every model-running command).
struct BackendOptions {
  // FP8 weights' many-row products on FP8 tensor cores, activations quantised per token and 128
  // channels as DeepSeek's inference does (CUDA only). Faster, but each product then carries about
  // 2.6% relative error against unquantised activations, and a model's logits drift past the
  // fixtures' 3e-2 of transformers (6.3e-2 on v3_fp8_long): so it is asked for, not the default.
  bool fp8_activations = false;
};

// "cpu" or "cuda"; an empty name picks cuda when a GPU is present, else cpu. Throws for an unknown
// or unavailable backend, or options it does not take.
std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& options = {});

}  // namespace dsv3
