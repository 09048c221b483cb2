// Picks the next token from a row of logits: greedy at temperature 0, else a draw from
// softmax(logits / temperature) restricted by top_k and top_p, from a generator the caller seeds.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace dsv3 {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int64_t top_k = 0;         // 0: all tokens
  float top_p = 1.0f;        // nucleus: the smallest set of tokens whose probability reaches top_p
};

int32_t sample_token(std::span<const float> logits, const SamplingParams& params, std::mt19937_64& rng);

}  // namespace dsv3
