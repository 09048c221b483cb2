#include "dsv3/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "dsv3/util/argmax.h"
#include "dsv3/util/error.h"

namespace dsv3 {

void validate(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f)) fail("temperature must be >= 0, got ", p.temperature);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("top_p must be in (0, 1], got ", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail("min_p must be in [0, 1], got ", p.min_p);
  if (p.top_k < 0) fail("top_k must be >= 0 (0 disables it), got ", p.top_k);
  if (!(p.repetition_penalty > 0.0f)) fail("repetition_penalty must be > 0, got ", p.repetition_penalty);
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f))
    fail("presence_penalty must be in [-2, 2], got ", p.presence_penalty);
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f))
    fail("frequency_penalty must be in [-2, 2], got ", p.frequency_penalty);
}

void TokenHistory::add_prompt(std::span<const int32_t> prompt, int64_t vocab_size) {
  in_prompt_or_output.assign(size_t(vocab_size), false);
  for (int32_t t : prompt) in_prompt_or_output[size_t(t)] = true;
}

void TokenHistory::add_output(int32_t token) {
  ++output_counts[token];
  if (size_t(token) < in_prompt_or_output.size()) in_prompt_or_output[size_t(token)] = true;
}

void apply_penalties(std::span<float> logits, const SamplingParams& p, const TokenHistory& history) {
  if (p.repetition_penalty != 1.0f) {
    for (size_t t = 0; t < history.in_prompt_or_output.size(); ++t)
      if (history.in_prompt_or_output[t])
        logits[t] = logits[t] > 0.0f ? logits[t] / p.repetition_penalty : logits[t] * p.repetition_penalty;
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (const auto& [token, count] : history.output_counts)
      logits[size_t(token)] -= p.presence_penalty + p.frequency_penalty * float(count);
  }
}

std::optional<TokenDraw> backend_draw(const SamplingParams& p, uint64_t key) {
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) return std::nullopt;
  if (p.temperature <= 0.0f) return TokenDraw::greedy();
  // top_k beyond what an int32 holds keeps every token anyway.
  return TokenDraw::sampled(p.temperature, key, p.top_p, p.min_p, int32_t(std::min<int64_t>(p.top_k, INT32_MAX)));
}

int32_t sample_token(std::span<const float> logits, const SamplingParams& params, std::mt19937_64& rng) {
  if (params.temperature <= 0.0f) return int32_t(argmax(logits));

  // Candidates as the cuts see them, by descending logit, ties to the lower id; top_k, min_p and
  // top_p only ever cut the tail, so no step sorts more than the head it keeps (a full sort of a
  // 160K-token vocabulary took 15-40 ms a token).
  auto before = [&](int32_t a, int32_t b) { return ranks_before(logits[size_t(a)], a, logits[size_t(b)], b); };
  std::vector<int32_t> candidates;
  if (params.top_k > 0 && size_t(params.top_k) < logits.size()) {  // the k first, as pick_token keeps them
    candidates = rank_first(logits, params.top_k);
    candidates.resize(size_t(params.top_k));
  } else {
    candidates.resize(logits.size());
    std::iota(candidates.begin(), candidates.end(), 0);
  }
  // Each candidate's probability relative to the most likely one's, exp((logit - max) / T).
  const float max_logit = logits[size_t(*std::min_element(candidates.begin(), candidates.end(), before))];
  const float inv_t = 1.0f / params.temperature;
  std::vector<float> weight(logits.size());
  for (int32_t t : candidates) weight[size_t(t)] = std::exp((logits[size_t(t)] - max_logit) * inv_t);
  if (params.min_p > 0.0f)  // the most likely, of weight 1, always stays: min_p <= 1
    std::erase_if(candidates, [&](int32_t t) { return weight[size_t(t)] < params.min_p; });
  if (params.top_p < 1.0f) {
    // The most likely, in order, until they hold top_p of the kept mass: heads of growing length are
    // selected (linear time) and sorted until one holds it.
    double kept_sum = 0.0;
    for (int32_t t : candidates) kept_sum += weight[size_t(t)];
    const double target = params.top_p * kept_sum;
    for (size_t head = std::min<size_t>(candidates.size(), 256);; head = std::min(candidates.size(), head * 8)) {
      if (head < candidates.size())
        std::nth_element(candidates.begin(), candidates.begin() + ptrdiff_t(head), candidates.end(), before);
      std::sort(candidates.begin(), candidates.begin() + ptrdiff_t(head), before);
      double mass = 0.0;
      size_t n = 0;
      while (n < head && mass < target) mass += weight[size_t(candidates[n++])];
      if (mass >= target || head == candidates.size()) {
        candidates.resize(std::max<size_t>(n, 1));
        break;
      }
    }
  }
  // One draw against the kept mass.
  double total = 0.0;
  for (int32_t t : candidates) total += weight[size_t(t)];
  double u = std::uniform_real_distribution<double>(0.0, total)(rng);
  int32_t last_possible = candidates.front();  // set in the loop: the most likely has weight 1
  for (int32_t t : candidates) {
    if (weight[size_t(t)] > 0.0f) last_possible = t;
    u -= weight[size_t(t)];
    if (u < 0.0) return t;
  }
  return last_possible;  // u met the total through rounding
}

float token_logprob(std::span<const float> logits, int32_t token, int32_t n, std::vector<std::pair<int32_t, float>>* top) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(double(l - max_logit));
  const float log_z = max_logit + float(std::log(sum));
  if (top && n > 0) {
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    const size_t k = std::min(size_t(n), order.size());
    std::partial_sort(order.begin(), order.begin() + ptrdiff_t(k), order.end(),
                      [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
    top->clear();
    for (size_t i = 0; i < k; ++i) top->push_back({order[i], logits[size_t(order[i])] - log_z});
  }
  return logits[size_t(token)] - log_z;
}

}  // namespace dsv3
