// How many bytes one single-sequence decode step must read: the weights it touches as stored, and
// the latent cache of `context_tokens` tokens, cache_value_bytes a value (Backend::cache_value_bytes).
#pragma once

#include <cstdint>

#include "dsv3/model/config.h"
#include "dsv3/model/weights.h"

namespace dsv3 {

double decode_bytes_per_token(const ModelWeights& weights, const ModelConfig& config, int64_t context_tokens,
                              int64_t cache_value_bytes);

}  // namespace dsv3
