// How a step's next token is picked from a row of logits where they are (Backend::pick_tokens):
// the greedy argmax, or a draw from softmax(logits / T) by util/gumbel_noise.h, optionally cut to
// the top_k most likely tokens, then to those at least min_p times as likely as the most likely,
// and then to the nucleus of top_p of their mass (sample_token's rules).
//
// The cut draw is exact without sorting: with the noise fixed, the draw from the nucleus is the
// token of the largest perturbed logit within it. Take the largest among the tokens not yet ruled
// out; it lies in the nucleus iff the tokens ranked before it (larger logit, ties to the lower id)
// hold less than top_p of the mass; if not, it and every token ranked after it are ruled out, and
// the next largest is taken. The nucleus holds at least top_p of the mass, so a round lands in it
// with odds of at least top_p. top_k needs one token found first: the k-th of the ranking (NaN
// last); the top k are it and the tokens ranked before it.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "dsv3/util/argmax.h"
#include "dsv3/util/gumbel_noise.h"

namespace dsv3 {

struct TokenDraw {
  float inv_temperature = 0.0f;  // 0: greedy
  uint64_t key = 0;              // the draw's key (draw_key), unused when greedy
  float top_p = 1.0f, min_p = 0.0f;
  int32_t top_k = 0;  // 0: every token

  static constexpr int kPacked = 6;  // values a backend takes a row

  static TokenDraw greedy() { return {}; }
  static TokenDraw sampled(float temperature, uint64_t key, float top_p = 1.0f, float min_p = 0.0f, int32_t top_k = 0) {
    return {1.0f / temperature, key, top_p, min_p, top_k};
  }
  bool cut() const { return inv_temperature != 0.0f && (top_p < 1.0f || min_p > 0.0f || top_k > 0); }

  std::array<int32_t, kPacked> pack() const {
    return {std::bit_cast<int32_t>(inv_temperature), int32_t(uint32_t(key)), int32_t(uint32_t(key >> 32)),
            std::bit_cast<int32_t>(top_p), std::bit_cast<int32_t>(min_p), top_k};
  }
  static TokenDraw unpack(std::span<const int32_t> v) {
    return {std::bit_cast<float>(v[0]), uint64_t(uint32_t(v[1])) | uint64_t(uint32_t(v[2])) << 32,
            std::bit_cast<float>(v[3]), std::bit_cast<float>(v[4]), v[5]};
  }
};

// Whether token a ranks before token b: a larger logit, ties to the lower id.
inline bool ranks_before(float logit_a, int64_t a, float logit_b, int64_t b) {
  return logit_a > logit_b || (logit_a == logit_b && a < b);
}

// ranks_before with NaN after every number (NaNs by id): a strict weak order over any values, as
// the standard sorts need (ranks_before is none once a value is NaN). The MoE router's top-k on the
// CPU ranks experts by it too.
inline bool ranks_before_nan_last(float logit_a, int64_t a, float logit_b, int64_t b) {
  if (std::isnan(logit_a) || std::isnan(logit_b)) return !std::isnan(logit_a) || (std::isnan(logit_b) && a < b);
  return ranks_before(logit_a, a, logit_b, b);
}

// Every token id, the k first by ranks_before (NaN last) in ids[0, k) and the k-th at ids[k - 1]
// (0 < k <= logits.size()), the rest after them in no order: linear time.
inline std::vector<int32_t> rank_first(std::span<const float> logits, int64_t k) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::nth_element(ids.begin(), ids.begin() + (k - 1), ids.end(), [&](int32_t a, int32_t b) {
    return ranks_before_nan_last(logits[size_t(a)], a, logits[size_t(b)], b);
  });
  return ids;
}

// The token of rank k - 1 (0 < k <= logits.size()) by ranks_before, NaN last.
inline int64_t kth_ranked(std::span<const float> logits, int64_t k) { return rank_first(logits, k)[size_t(k - 1)]; }

// The token `draw` picks from `logits` (argmax.h's rule over the logits, or over the perturbed
// logits of the tokens the cuts leave: the largest above -inf, the first of equal ones, else 0).
inline int64_t pick_token(std::span<const float> logits, const TokenDraw& draw) {
  if (draw.inv_temperature == 0.0f) return argmax(logits);
  const int64_t best_logit = argmax(logits);
  const float max_logit = logits.empty() ? 0.0f : logits[size_t(best_logit)];
  // The weights relative to the most likely token's, once for every pass; a token is kept by min_p
  // where its weight is at least min_p.
  std::vector<float> weight(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) weight[i] = std::exp((logits[i] - max_logit) * draw.inv_temperature);
  // top_k: the k-th token; the top k are it and those ranked before it (all but NaN where it is NaN).
  const int64_t kth = draw.top_k > 0 && size_t(draw.top_k) < logits.size() ? kth_ranked(logits, draw.top_k) : -1;
  auto in_top_k = [&](size_t i) {
    return kth < 0 || std::isnan(logits[size_t(kth)]) || int64_t(i) == kth ||
           ranks_before(logits[i], int64_t(i), logits[size_t(kth)], kth);
  };
  auto kept = [&](size_t i) { return weight[i] >= draw.min_p && in_top_k(i); };
  float kept_mass = 0.0f;
  if (draw.top_p < 1.0f)
    for (size_t i = 0; i < logits.size(); ++i)
      if (kept(i)) kept_mass += weight[i];
  bool ruled_out_tail = false;  // tokens ranked at or after `pivot` are ruled out
  int64_t pivot = 0;
  for (;;) {
    int64_t best = -1;
    double best_score = -INFINITY;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (!kept(i) || (ruled_out_tail && !ranks_before(logits[i], int64_t(i), logits[size_t(pivot)], pivot))) continue;
      const double score = perturbed_logit(logits[i], draw.inv_temperature, draw.key, int64_t(i));
      if (score > best_score) best_score = score, best = int64_t(i);
    }
    if (best < 0) return ruled_out_tail ? pivot : 0;  // nothing above -inf is left
    if (draw.top_p >= 1.0f) return best;
    float before = 0.0f;  // the kept mass ranked before `best`
    for (size_t i = 0; i < logits.size(); ++i)
      if (kept(i) && ranks_before(logits[i], int64_t(i), logits[size_t(best)], best)) before += weight[i];
    if (before < draw.top_p * kept_mass) return best;
    ruled_out_tail = true, pivot = best;
  }
}

}  // namespace dsv3
