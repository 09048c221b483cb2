#include "dsv3/bench/op_rates.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <utility>

#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

using Op = std::function<void(std::span<const Indices> inputs)>;

// Seconds a call of `op`, over `inputs` in backend memory: one untimed call (which makes what first
// calls make: product plans, pooled memory), then `repeats` calls in one step, timed to the end of
// the step's download.
double seconds_per_call(Backend& backend, std::span<const std::vector<int32_t>> inputs, int repeats, const Op& op) {
  std::vector<float> done;
  auto run = [&](int calls) {
    backend.run_step(std::nullopt, inputs,
                     [&](std::span<const Indices> in) {
                       for (int i = 0; i < calls; ++i) op(in);
                       return backend.alloc(1, 1);
                     },
                     done);
  };
  run(1);
  const auto start = std::chrono::steady_clock::now();
  run(repeats);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
}

ActBuffer random_rows(Backend& backend, int64_t rows, int64_t cols, float scale) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(size_t(rows * cols));
  for (float& v : values) v = normal(rng);
  return backend.upload(values, rows, cols);
}

constexpr int kRepeats = 10;

}  // namespace

OpRate time_mla_decode(DeepseekModel& model, int64_t items, int64_t context) {
  const ModelConfig& c = model.config();
  const MlaShape& shape = model.mla_shape();
  Backend& backend = model.backend();
  const int64_t page_size = model.pages().page_size(), pages_each = (context + page_size - 1) / page_size;
  const LatentCacheLayout layout{1, items * pages_each, page_size, c.kv_lora_rank, c.qk_rope_head_dim};
  const Buffer cache = backend.alloc_cache(layout);

  // Every slot written once (zeros: the values do not change the work), a chunk of rows at a time.
  constexpr int64_t kChunk = 4096;
  std::vector<std::vector<int32_t>> fill(1, std::vector<int32_t>(size_t(layout.n_pages * page_size)));
  std::iota(fill[0].begin(), fill[0].end(), 0);
  const ActBuffer zeros = backend.upload(std::vector<float>(size_t(kChunk * layout.row_width())), kChunk,
                                         layout.row_width());
  seconds_per_call(backend, fill, 1, [&](std::span<const Indices> in) {
    for (int64_t first = 0; first < in[0].size; first += kChunk) {
      const int64_t n = std::min(kChunk, in[0].size - first);
      backend.cache_write(cache, layout, 0, {in[0].data + first, n}, zeros.view.rows_slice(0, n));
    }
  });

  std::vector<std::vector<int32_t>> batch(2);  // items (query row, context, table offset), tables
  for (int64_t i = 0; i < items; ++i) {
    batch[0].insert(batch[0].end(), {int32_t(i), int32_t(context), int32_t(i * pages_each)});
    for (int64_t p = 0; p < pages_each; ++p) batch[1].push_back(int32_t(i * pages_each + p));
  }
  const ActBuffer q = random_rows(backend, items, shape.n_heads * shape.qk_head_dim(), 1.0f);
  const ActBuffer out = backend.alloc(items, shape.n_heads * shape.v_head_dim);
  const LinearWeight& kv_b_proj = model.weights().layers[0].self_attn.kv_b_proj;
  const double seconds = seconds_per_call(backend, batch, kRepeats, [&](std::span<const Indices> in) {
    backend.mla_decode(shape, q.view, kv_b_proj, cache, layout, 0, {in[0], in[1], items}, out.view);
  });
  return {"MLA decode, " + std::to_string(items) + " x " + std::to_string(context) + " tokens",
          double(items * context * layout.row_width() * backend.cache_value_bytes()), seconds};
}

namespace {

// The largest dense weight (the dense MLP's, else an attention projection's) and seconds a call of
// its product for `rows` rows.
std::pair<const LinearWeight*, double> dense_product_seconds(DeepseekModel& model, int64_t rows) {
  const LayerWeights& first = model.weights().layers[0];
  const LinearWeight& w = first.mlp ? first.mlp->gate_proj : first.self_attn.o_proj;
  Backend& backend = model.backend();
  const ActBuffer x = random_rows(backend, rows, w.in_features(), 1.0f);
  const ActBuffer y = backend.alloc(rows, w.out_features());
  return {&w, seconds_per_call(backend, {}, kRepeats,
                               [&](std::span<const Indices>) { backend.linear(x.view, w, y.view); })};
}

std::string product_name(const LinearWeight& w, int64_t rows) {
  return std::string(dtype_name(w.weight.dtype)) + " product " + std::to_string(rows) + "x" +
         std::to_string(w.out_features()) + "x" + std::to_string(w.in_features());
}

}  // namespace

OpRate time_dense_product(DeepseekModel& model, int64_t rows) {
  const auto [w, seconds] = dense_product_seconds(model, rows);
  return {product_name(*w, rows), 2.0 * double(rows) * double(w->out_features()) * double(w->in_features()), seconds};
}

OpRate time_decode_product(DeepseekModel& model, int64_t rows) {
  const auto [w, seconds] = dense_product_seconds(model, rows);
  return {product_name(*w, rows), double(w->n_bytes()), seconds};
}

OpRate time_routed_experts(DeepseekModel& model, int64_t tokens) {
  const ModelConfig& c = model.config();
  const auto layer = std::find_if(model.weights().layers.begin(), model.weights().layers.end(),
                                  [](const LayerWeights& l) { return l.moe.has_value(); });
  if (layer == model.weights().layers.end()) fail("the model has no MoE layer to time");
  const MoEWeights& moe = *layer->moe;
  Backend& backend = model.backend();
  const ActBuffer x = random_rows(backend, tokens, c.hidden_size, 1.0f);
  const ActBuffer out = backend.alloc(tokens, c.hidden_size);
  const Routing routing = backend.moe_route(
      x.view, moe.gate, moe.e_score_correction_bias ? &moe.e_score_correction_bias->view : nullptr,
      model.router_params());
  const double seconds = seconds_per_call(backend, {}, kRepeats, [&](std::span<const Indices>) {
    backend.moe_experts(x.view, routing, moe.experts, nullptr, out.view);
  });
  const LinearWeight& gate = moe.experts[0].gate_proj;
  return {"experts " + std::to_string(tokens) + "x" + std::to_string(routing.top_k) + " " +
              std::string(dtype_name(gate.weight.dtype)),
          2.0 * 3.0 * double(tokens * routing.top_k) * double(gate.out_features()) * double(gate.in_features()),
          seconds};
}

}  // namespace dsv3
