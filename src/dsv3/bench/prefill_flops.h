// The arithmetic of one prefill, to set its speed against the device's matrix-product rate.
#pragma once

#include <cstdint>

#include "dsv3/model/config.h"
#include "dsv3/model/weights.h"

namespace dsv3 {

// FLOPs (2 a multiply-add) of a prefill of n_tokens into an empty cache: every token's products
// (attention projections, kv_b_proj's expansion of its latent row, the dense MLP or the router, top_k
// routed and the shared experts), causal attention's scores and weighted values, and the head for the
// last token.
double prefill_flops(const ModelWeights& weights, const ModelConfig& config, int64_t n_tokens);

}  // namespace dsv3
