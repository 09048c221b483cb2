// How a step's next token is picked from a row of logits where they are (Backend::pick_tokens):
// the greedy argmax, or a draw from softmax(logits / T) by util/gumbel_noise.h.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>

#include "dsv3/util/argmax.h"
#include "dsv3/util/gumbel_noise.h"

namespace dsv3 {

struct TokenDraw {
  float inv_temperature = 0.0f;  // 0: greedy
  uint64_t key = 0;              // the draw's key (draw_key), unused when greedy

  static TokenDraw greedy() { return {}; }
  static TokenDraw sampled(float temperature, uint64_t key) { return {1.0f / temperature, key}; }

  // As a backend takes it: three int32 values.
  std::array<int32_t, 3> pack() const {
    return {std::bit_cast<int32_t>(inv_temperature), int32_t(uint32_t(key)), int32_t(uint32_t(key >> 32))};
  }
  static TokenDraw unpack(std::span<const int32_t> v) {
    return {std::bit_cast<float>(v[0]), uint64_t(uint32_t(v[1])) | uint64_t(uint32_t(v[2])) << 32};
  }
};

// The token `draw` picks from `logits`: argmax.h's rule over the logits, or over their perturbed
// values (the same rule: the largest above -inf, the first of equal ones, else 0).
inline int64_t pick_token(std::span<const float> logits, const TokenDraw& draw) {
  if (draw.inv_temperature == 0.0f) return argmax(logits);
  int64_t best = 0;
  double best_score = -INFINITY;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double score = perturbed_logit(logits[i], draw.inv_temperature, draw.key, int64_t(i));
    if (score > best_score) best_score = score, best = int64_t(i);
  }
  return best;
}

}  // namespace dsv3
