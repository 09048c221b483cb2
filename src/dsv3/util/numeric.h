// Scalar conversions between float32 and the stored formats: bfloat16, IEEE half, and FP8 E4M3
// (the OCP "e4m3fn" variant DeepSeek uses: bias 7, no infinities, 0x7f/0xff are NaN, max 448).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace dsv3 {

inline float bits_to_f32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint32_t f32_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

// Round to nearest even, as torch's .to(torch.bfloat16) does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits = f32_to_bits(f);
  if (std::isnan(f)) return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float value = std::ldexp(float(mantissa), -24);
    return (h & 0x8000) ? -value : value;
  }
  if (exponent == 31) return bits_to_f32(sign | 0x7f800000 | (mantissa << 13));
  return bits_to_f32(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline float fp8_e4m3_decode(uint8_t v) {
  const int exponent = (v >> 3) & 0xf;
  const int mantissa = v & 0x7;
  float value;
  if (exponent == 15 && mantissa == 7) {
    value = NAN;
  } else if (exponent == 0) {
    value = std::ldexp(float(mantissa), -9);  // subnormal: m/8 * 2^-6
  } else {
    value = std::ldexp(1.0f + float(mantissa) / 8.0f, exponent - 7);
  }
  return (v & 0x80) ? -value : value;
}

// All 256 E4M3 values as float32, for table look-up on hot paths.
inline const std::array<float, 256>& fp8_e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = fp8_e4m3_decode(uint8_t(i));
    return t;
  }();
  return table;
}

inline float fp8_e4m3_to_f32(uint8_t v) { return fp8_e4m3_table()[v]; }

// Round to the nearest E4M3 value (ties to even), saturating at +-448 as torch's cast of a scaled
// tensor is expected to stay in range.
inline uint8_t f32_to_fp8_e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;
  // Search the 127 non-negative finite codes; they are monotonic in value.
  int lo = 0, hi = 0x7e;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (fp8_e4m3_decode(uint8_t(mid)) <= a) lo = mid; else hi = mid;
  }
  const float dlo = a - fp8_e4m3_decode(uint8_t(lo));
  const float dhi = fp8_e4m3_decode(uint8_t(hi)) - a;
  const int code = (dlo < dhi || (dlo == dhi && (lo & 1) == 0)) ? lo : hi;
  return sign | uint8_t(code);
}

}  // namespace dsv3
