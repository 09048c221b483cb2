// Rotary position embedding of the decoupled rope part of MLA, with YaRN context extension
// (REFERENCE.md, MLA; transformers' _compute_yarn_parameters is the exact rule).
#pragma once

#include <vector>

#include "dsv3/model/config.h"

namespace dsv3 {

struct RopeFrequencies {
  std::vector<float> inv_freq;   // one a rotated pair (2i, 2i+1), qk_rope_head_dim / 2 of them
  float attention_factor = 1.0f;  // YaRN multiplies cos and sin by this
};

RopeFrequencies rope_frequencies(const ModelConfig& config);

// 1/sqrt(qk_nope + qk_rope), times mscale^2 under YaRN, m = 0.1 * mscale_all_dim * ln(factor) + 1.
float mla_softmax_scale(const ModelConfig& config);

}  // namespace dsv3
