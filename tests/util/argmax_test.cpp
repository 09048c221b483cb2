#include "dsv3/util/argmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace dsv3 {
namespace {

TEST(Argmax, TheFirstOfEqualLargestValues) {
  EXPECT_EQ(argmax(std::vector<float>{0.5f, 3.0f, -1.0f, 3.0f}), 1);
  EXPECT_EQ(argmax(std::vector<float>{-2.0f, -7.0f}), 0);
  EXPECT_EQ(argmax(std::vector<float>{1.0f}), 0);
}

TEST(Argmax, NaNsAndMinusInfinityAreNeverChosen) {
  const float nan = std::nanf(""), inf = INFINITY;
  EXPECT_EQ(argmax(std::vector<float>{nan, -inf, 2.0f, nan}), 2);
  EXPECT_EQ(argmax(std::vector<float>{-inf, -inf, nan}), 0);
  EXPECT_EQ(argmax(std::vector<float>{-1.0f, inf, inf}), 1);
  EXPECT_EQ(argmax(std::vector<float>{}), 0);
}

}  // namespace
}  // namespace dsv3
