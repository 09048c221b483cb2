// The greedy choice of a token: the index of the largest value, the first of equal ones. NaNs are
// never chosen; a row with nothing above -inf gives 0. The host sampler and every backend's
// pick_tokens keep this rule, so that a token picked on the GPU is the one the host would pick.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

namespace dsv3 {

inline int64_t argmax(std::span<const float> values) {
  int64_t best = 0;
  float best_value = -INFINITY;
  for (size_t i = 0; i < values.size(); ++i)
    if (values[i] > best_value) best_value = values[i], best = int64_t(i);
  return best;
}

}  // namespace dsv3
