// FP8 weights against float32 activations on FP16 tensor cores (moe_mma.cu, grouped_few.cu): E4M3
// codes widen to FP16 exactly, one conversion a pair, and a row of x is multiplied by a power of two
// (exact) that brings its largest magnitude into [2^14, 2^15), inside FP16's range, then split as
// x = high + low in FP16 (22 bits of mantissa). Both parts are multiplied into float32 sums, which the
// inverse power of two brings back.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace dsv3::cuda {

__device__ inline uint32_t f16x2_of_e4m3x2(uint32_t codes) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(codes), __NV_E4M3);
  return uint32_t(h.x) | uint32_t(h.y) << 16;
}

__device__ inline uint32_t bits(__half2 v) { return *reinterpret_cast<const uint32_t*>(&v); }

// The exponent s of the power of two 2^s that x's rows are multiplied by, from the bits of their
// largest magnitude m: m 2^s in [2^14, 2^15) for normal m (2^s itself stays a normal float).
__device__ inline int scale_exponent(unsigned max_bits) {
  const float m = __uint_as_float(max_bits);
  if (!(m > 0.0f) || !isfinite(m)) return 0;        // zeros, or values that stay inf or NaN whatever the scale
  const int e = max(int(max_bits >> 23), 1) - 126;  // m < 2^e
  return min(15 - e, 126);
}

// 2^s for s in [-126, 127].
__device__ inline float power_of_two(int s) { return __int_as_float((s + 127) << 23); }

// (x0, x1), already scaled, as their high and low FP16 parts.
__device__ inline void split_f16(float x0, float x1, uint32_t& high, uint32_t& low) {
  const __half2 h = __floats2half2_rn(x0, x1);
  const float2 f = __half22float2(h);
  high = bits(h), low = bits(__floats2half2_rn(x0 - f.x, x1 - f.y));
}

}  // namespace dsv3::cuda
