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

TEST(TokenDraw, PacksIntoThreeValues) {
  const TokenDraw draw = TokenDraw::sampled(0.7f, 0x0123456789abcdefull);
  const std::array<int32_t, 3> packed = draw.pack();
  const TokenDraw back = TokenDraw::unpack(packed);
  EXPECT_EQ(back.inv_temperature, draw.inv_temperature);
  EXPECT_EQ(back.key, draw.key);
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

TEST(TokenDraw, KeysOfOneSeedDifferAndRepeat) {
  EXPECT_NE(draw_key(1, 0), draw_key(1, 1));
  EXPECT_NE(draw_key(1, 0), draw_key(2, 0));
  EXPECT_EQ(draw_key(5, 3), draw_key(5, 3));
}

}  // namespace
}  // namespace dsv3
