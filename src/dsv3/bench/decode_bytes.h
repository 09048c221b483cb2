// How many bytes one single-sequence decode step must read: the weights it touches as stored, and
// the latent cache of `context_tokens` tokens (float32 on cpu).
#pragma once

#include <cstdint>
#include <string>

#include "dsv3/model/config.h"
#include "dsv3/model/weights.h"

namespace dsv3 {

double decode_bytes_per_token(const ModelWeights& weights, const ModelConfig& config, int64_t context_tokens,
                              const std::string& backend);

}  // namespace dsv3
