#include "dsv3/util/token_draw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace dsv3 {
namespace {

TEST(TokenDraw, GreedyIsTheArgmax) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(pick_token(logits, TokenDraw::greedy()), 1);
}

TEST(TokenDraw, PacksIntoSixValues) {
  const TokenDraw draw = TokenDraw::sampled(0.7f, 0x0123456789abcdefull, 0.9f, 0.05f, 40);
  const std::array<int32_t, TokenDraw::kPacked> packed = draw.pack();
  const TokenDraw back = TokenDraw::unpack(packed);
  EXPECT_EQ(back.inv_temperature, draw.inv_temperature);
  EXPECT_EQ(back.key, draw.key);
  EXPECT_EQ(back.top_p, draw.top_p);
  EXPECT_EQ(back.min_p, draw.min_p);
  EXPECT_EQ(back.top_k, draw.top_k);
}

// Draws over many keys follow softmax(logits / T): each token's share within 4 standard errors.
TEST(TokenDraw, DrawsFollowTheSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.5f, -1.0f, 2.0f, -INFINITY, std::nanf("")};
  for (const float temperature : {1.0f, 0.5f, 2.0f}) {
    std::vector<double> p(logits.size(), 0.0);
    double z = 0.0;
    for (size_t i = 0; i < 5; ++i) z += p[i] = std::exp(double(logits[i]) / temperature);
    constexpr int kDraws = 40000;
    std::vector<int> count(logits.size(), 0);
    for (int n = 0; n < kDraws; ++n) ++count[size_t(pick_token(logits, TokenDraw::sampled(temperature, draw_key(42, uint64_t(n)))))];
    for (size_t i = 0; i < logits.size(); ++i) {
      const double expected = p[i] / z, share = double(count[i]) / kDraws;
      EXPECT_NEAR(share, expected, 4.0 * std::sqrt(expected * (1.0 - expected) / kDraws) + 1e-9)
          << "token " << i << " at T " << temperature;
    }
  }
}

// Cut draws follow the softmax renormalised over what the cuts keep: top_k keeps the k most likely
// (ties to the lower id); min_p drops the tokens less than min_p times as likely as the most likely;
// top_p then keeps the most likely until they hold top_p of the kept mass, the one that crosses it
// included.
TEST(TokenDraw, CutDrawsFollowTheSoftmaxOfWhatTheCutsKeep) {
  // Probabilities at T = 1, most likely first: tokens 2, 4, 0, 1, 6, 3 hold 0.494, 0.300, 0.110,
  // 0.041, 0.041, 0.015 (6 ties with 1 and ranks after it, by id). Relative to token 2's, token 0's
  // is 0.22 and token 1's 0.08.
  const std::vector<float> logits = {1.0f, 0.0f, 2.5f, -1.0f, 2.0f, -INFINITY, 0.0f};
  struct Case {
    float top_p, min_p;
    std::vector<int> kept;
    int32_t top_k = 0;
  };
  // With top_k: 4 keeps 1 and not 6 (their tie goes to the lower id), 5 keeps both; top_k 4 then
  // top_p 0.9 of the four's mass (0.523, 0.317, 0.116, 0.043) keeps three; 6 and more keep all.
  for (const Case& c : {Case{0.5f, 0.0f, {2, 4}}, Case{0.43f, 0.0f, {2}}, Case{0.92f, 0.0f, {2, 4, 0, 1}},
                        Case{1.0f, 0.2f, {2, 4, 0}}, Case{0.9f, 0.2f, {2, 4, 0}}, Case{0.5f, 0.2f, {2}},
                        Case{1.0f, 0.0f, {2}, 1}, Case{1.0f, 0.0f, {2, 4, 0, 1}, 4}, Case{1.0f, 0.0f, {2, 4, 0, 1, 6}, 5},
                        Case{0.9f, 0.0f, {2, 4, 0}, 4}, Case{1.0f, 0.2f, {2, 4, 0}, 5}, Case{1.0f, 0.0f, {2, 4, 0, 1, 6, 3}, 7}}) {
    std::vector<double> p(logits.size(), 0.0);
    double z = 0.0;
    for (int i : c.kept) z += p[size_t(i)] = std::exp(double(logits[size_t(i)]));
    constexpr int kDraws = 30000;
    std::vector<int> count(logits.size(), 0);
    for (int n = 0; n < kDraws; ++n)
      ++count[size_t(pick_token(logits, TokenDraw::sampled(1.0f, draw_key(7, uint64_t(n)), c.top_p, c.min_p, c.top_k)))];
    for (size_t i = 0; i < logits.size(); ++i) {
      const double expected = p[i] / z, share = double(count[i]) / kDraws;
      EXPECT_NEAR(share, expected, 4.0 * std::sqrt(expected * (1.0 - expected) / kDraws) + 1e-9)
          << "token " << i << " at top_p " << c.top_p << ", min_p " << c.min_p << ", top_k " << c.top_k;
    }
  }
}

TEST(TokenDraw, KeysOfOneSeedDifferAndRepeat) {
  EXPECT_NE(draw_key(1, 0), draw_key(1, 1));
  EXPECT_NE(draw_key(1, 0), draw_key(2, 0));
  EXPECT_EQ(draw_key(5, 3), draw_key(5, 3));
}

}  // namespace
}  // namespace dsv3
