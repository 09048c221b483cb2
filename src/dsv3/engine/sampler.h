// Picks the next token from a row of logits, as OpenAI-style sampling parameters say: penalties
// on tokens already seen, then greedy at temperature 0, else a draw from softmax(logits / T)
// restricted by top_k, top_p and min_p, from the request's own seeded generator.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "dsv3/util/token_draw.h"

namespace dsv3 {

struct SamplingParams {
  float temperature = 1.0f;        // 0: greedy
  int64_t top_k = 0;               // 0: all tokens
  float top_p = 1.0f;              // nucleus: the smallest set of tokens whose probability reaches top_p
  float min_p = 0.0f;              // drop tokens less likely than min_p times the most likely
  float repetition_penalty = 1.0f;  // > 1 discourages tokens of the prompt and output (divides positive logits)
  float presence_penalty = 0.0f;   // subtracted once from tokens the output already has
  float frequency_penalty = 0.0f;  // subtracted per occurrence in the output
  std::optional<uint64_t> seed;    // reproducible draws; random when absent
};

// Checks ranges (temperature >= 0, top_p in (0, 1], min_p in [0, 1], top_k >= 0, repetition_penalty
// > 0, presence/frequency in [-2, 2]); throws dsv3::Error naming the field.
void validate(const SamplingParams& params);

// Tokens seen so far by one request: for the penalties.
struct TokenHistory {
  std::unordered_map<int32_t, int32_t> output_counts;
  std::vector<bool> in_prompt_or_output;  // by id, for repetition_penalty

  void add_prompt(std::span<const int32_t> prompt, int64_t vocab_size);
  void add_output(int32_t token);
};

// Applies the penalties to `logits` in place.
void apply_penalties(std::span<float> logits, const SamplingParams& params, const TokenHistory& history);

// Where sample_token over penalised logits is a pick a backend can make itself
// (Backend::pick_tokens): greedy, or a draw from softmax(logits / T) cut by top_k, min_p and top_p,
// with no penalty. Such a draw takes its noise from `key` (util/gumbel_noise.h), not from the
// request's generator.
std::optional<TokenDraw> backend_draw(const SamplingParams& params, uint64_t key);

// The next token from (penalised) logits.
int32_t sample_token(std::span<const float> logits, const SamplingParams& params, std::mt19937_64& rng);

// log_softmax of `logits` at `token`, and the `n` most likely tokens with theirs (most likely first).
float token_logprob(std::span<const float> logits, int32_t token, int32_t n,
                    std::vector<std::pair<int32_t, float>>* top);

}  // namespace dsv3
