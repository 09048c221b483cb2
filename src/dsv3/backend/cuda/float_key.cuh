// Floats as unsigned keys, for orders taken by integer means (warp reductions, radix selects).
#pragma once

#include <cstdint>

namespace dsv3::cuda {

// A key whose unsigned order is the floats' own (a negative value's bits reversed, a positive one's
// above them), -0 as +0, NaN below everything (it compares larger than nothing).
__device__ inline uint32_t ordered_key(float value) {
  if (value != value) return 0u;
  const uint32_t bits = __float_as_uint(value + 0.0f);  // -0 + 0 is +0
  return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

}  // namespace dsv3::cuda
