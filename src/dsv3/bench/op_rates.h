// The hot ops of the model timed on their own through the backend seam, on the loaded model's
// weights and shapes: MLA decode attention over a latent cache (bytes of cache read a second), the
// largest dense weight's product for a prefill (FLOPs a second) and for decode batches (its bytes a
// second), and the routed experts of a prefill-sized batch (FLOPs a second).
#pragma once

#include <cstdint>
#include <string>

#include "dsv3/model/deepseek_model.h"

namespace dsv3 {

struct OpRate {
  std::string what;     // the op and its sizes, for the report
  double amount = 0.0;  // bytes read (attention) or FLOPs (products) a call
  double seconds = 0.0;  // a call
  double per_second() const { return amount / seconds; }
};

// mla_decode of layer 0 for `items` sequences of `context` tokens each, every one on its own pages;
// amount: the latent cache rows read.
OpRate time_mla_decode(DeepseekModel& model, int64_t items, int64_t context);

// linear() of `rows` rows on the largest dense weight (the dense MLP's, else an attention
// projection's); amount: 2 rows out in FLOPs.
OpRate time_dense_product(DeepseekModel& model, int64_t rows);

// The same product for a decode batch of `rows` rows; amount: the weight's bytes as stored, which
// every such product reads at least once.
OpRate time_decode_product(DeepseekModel& model, int64_t rows);

// moe_experts() of the first MoE layer for `tokens` tokens as its router sends them; amount: the
// FLOPs of every (token, expert) pair's three products.
OpRate time_routed_experts(DeepseekModel& model, int64_t tokens);

}  // namespace dsv3
