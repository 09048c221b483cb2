#include "dsv3/engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

TEST(Sampler, TemperatureZeroIsArgmax) {
  std::mt19937_64 rng(1);
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  SamplingParams p;
  p.temperature = 0.0f;
  EXPECT_EQ(sample_token(logits, p, rng), 1);
}

TEST(Sampler, BackendsDrawWhereNoPenaltyApplies) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_p = 0.5f, p.top_k = 3;  // greedy whatever the cuts
  ASSERT_TRUE(backend_draw(p, 9).has_value());
  EXPECT_EQ(backend_draw(p, 9)->inv_temperature, 0.0f);
  SamplingParams drawn;
  drawn.temperature = 0.5f;
  ASSERT_TRUE(backend_draw(drawn, 9).has_value());
  EXPECT_EQ(backend_draw(drawn, 9)->inv_temperature, 2.0f);
  EXPECT_EQ(backend_draw(drawn, 9)->key, 9u);
  SamplingParams nucleus = drawn;
  nucleus.top_p = 0.95f, nucleus.min_p = 0.05f;
  ASSERT_TRUE(backend_draw(nucleus, 9).has_value());
  EXPECT_EQ(backend_draw(nucleus, 9)->top_p, 0.95f);
  EXPECT_EQ(backend_draw(nucleus, 9)->min_p, 0.05f);
  SamplingParams top = nucleus;
  top.top_k = 40;
  ASSERT_TRUE(backend_draw(top, 9).has_value());
  EXPECT_EQ(backend_draw(top, 9)->top_k, 40);
  for (auto cut : {+[](SamplingParams& s) { s.repetition_penalty = 1.2f; },
                   +[](SamplingParams& s) { s.presence_penalty = 0.5f; },
                   +[](SamplingParams& s) { s.frequency_penalty = -0.5f; }}) {
    SamplingParams q = drawn;
    cut(q);
    EXPECT_FALSE(backend_draw(q, 9).has_value());
  }
  SamplingParams penalised_greedy = p;
  penalised_greedy.repetition_penalty = 1.2f;
  EXPECT_FALSE(backend_draw(penalised_greedy, 9).has_value());
}

// A vocabulary whose nucleus is longer than the first head the sampler sorts (256): every draw
// falls in the smallest set of most likely tokens that holds top_p of the mass, and the draws reach
// its far end; with top_k and min_p too, each cut holds.
TEST(Sampler, CutsKeepExactlyTheHeadTheyName) {
  std::mt19937_64 rng(3);
  std::vector<float> logits(5000);
  for (size_t i = 0; i < logits.size(); ++i) logits[(i * 7919) % logits.size()] = -0.002f * float(i);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  double total = 0.0, mass = 0.0;
  for (float l : logits) total += std::exp(double(l));
  size_t nucleus = 0;
  while (mass < 0.5 * total) mass += std::exp(double(logits[size_t(order[nucleus++])]));
  ASSERT_GT(nucleus, 256u);
  SamplingParams p;
  p.top_p = 0.5f;
  std::set<int32_t> allowed(order.begin(), order.begin() + ptrdiff_t(nucleus)), seen;
  for (int i = 0; i < 4000; ++i) seen.insert(sample_token(logits, p, rng));
  for (int32_t t : seen) EXPECT_TRUE(allowed.count(t)) << "token " << t << " is outside the nucleus";
  EXPECT_TRUE(seen.count(order[nucleus - 1]) || seen.count(order[nucleus - 2]) || seen.count(order[nucleus - 3]));

  SamplingParams k;
  k.top_k = 40, k.min_p = std::exp(-0.002f * 30.5f);  // min_p cuts inside top_k: the 31 most likely
  seen.clear();
  for (int i = 0; i < 2000; ++i) seen.insert(sample_token(logits, k, rng));
  EXPECT_EQ(seen, std::set<int32_t>(order.begin(), order.begin() + 31));
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  std::mt19937_64 rng(1);
  const std::vector<float> logits = {0.0f, 5.0f, 4.9f, -5.0f};
  SamplingParams p;
  p.min_p = 0.5f;
  std::set<int32_t> seen;
  for (int i = 0; i < 200; ++i) seen.insert(sample_token(logits, p, rng));
  EXPECT_EQ(seen, (std::set<int32_t>{1, 2}));
}

TEST(Sampler, PenaltiesLowerSeenTokens) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f};
  TokenHistory history;
  history.add_prompt(std::vector<int32_t>{1}, 3);
  history.add_output(0);
  history.add_output(0);
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  apply_penalties(logits, p, history);
  EXPECT_FLOAT_EQ(logits[0], 2.0f / 2.0f - 0.5f - 0.25f * 2);
  EXPECT_FLOAT_EQ(logits[1], -4.0f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f);
}

TEST(Sampler, LogprobsAreLogSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  std::vector<std::pair<int32_t, float>> top;
  const float lp = token_logprob(logits, 0, 2, &top);
  const double z = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(lp, 1.0 - z, 1e-5);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].first, 2);
  EXPECT_NEAR(top[0].second, 3.0 - z, 1e-5);
}

TEST(Sampler, OutOfRangeParametersAreRejected) {
  SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(validate(p), Error);
  p = {};
  p.temperature = -0.5f;
  EXPECT_THROW(validate(p), Error);
  p = {};
  p.presence_penalty = 3.0f;
  EXPECT_THROW(validate(p), Error);
}

}  // namespace
}  // namespace dsv3
