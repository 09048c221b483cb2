// The tests' measure of how far a vector of results lies from its reference.
#pragma once

#include <cmath>
#include <vector>

namespace dsv3::testing {

// ||a - b|| / ||b||, b the reference; infinite where a holds a value that is not finite, so that a
// NaN fails every tolerance with a number that says so.
inline double relative_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0.0, ref = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff += double(a[i] - b[i]) * double(a[i] - b[i]);
    ref += double(b[i]) * double(b[i]);
  }
  return std::sqrt(diff / ref);
}

}  // namespace dsv3::testing
