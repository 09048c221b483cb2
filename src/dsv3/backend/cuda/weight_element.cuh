// Reading stored weights in kernels: one element as float32, or a 16-byte vector of them, in the
// weight's stored dtype with FP8 block scales applied (REFERENCE.md, checkpoint format).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

__device__ inline float bf16_bits_to_float(uint32_t bits) { return __uint_as_float(bits << 16); }

__device__ inline float fp8_e4m3_to_float(uint8_t code) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(code, __NV_E4M3)));
}

// W[row][col] as float32.
__device__ inline float weight_element(const DeviceWeight& w, int64_t row, int64_t col) {
  const int64_t i = row * w.cols + col;
  switch (w.dtype) {
    case DType::F32: return static_cast<const float*>(w.data)[i];
    case DType::BF16: return bf16_bits_to_float(static_cast<const uint16_t*>(w.data)[i]);
    case DType::F16: return __half2float(static_cast<const __half*>(w.data)[i]);
    case DType::F8_E4M3: {
      const int64_t scale_cols = (w.cols + w.block_in - 1) / w.block_in;
      return fp8_e4m3_to_float(static_cast<const uint8_t*>(w.data)[i]) *
             w.scale_inv[(row / w.block_out) * scale_cols + col / w.block_in];
    }
  }
  return 0.0f;
}

// 16 bytes of stored elements widened to float32: kElems of them.
template <DType D>
struct WeightVector;

template <>
struct WeightVector<DType::F32> {
  static constexpr int kElems = 4;
  __device__ static void load(const uint8_t* p, float* out) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  }
};

template <>
struct WeightVector<DType::BF16> {
  static constexpr int kElems = 8;
  __device__ static void load(const uint8_t* p, float* out) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(words[i] << 16);
      out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
  }
};

template <>
struct WeightVector<DType::F16> {
  static constexpr int kElems = 8;
  __device__ static void load(const uint8_t* p, float* out) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(h[i]);
      out[2 * i] = f.x, out[2 * i + 1] = f.y;
    }
  }
};

template <>
struct WeightVector<DType::F8_E4M3> {
  static constexpr int kElems = 16;
  __device__ static void load(const uint8_t* p, float* out) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const __nv_fp8x2_storage_t* pairs = reinterpret_cast<const __nv_fp8x2_storage_t*>(&v);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pairs[i], __NV_E4M3)));
      out[2 * i] = f.x, out[2 * i + 1] = f.y;
    }
  }
};

}  // namespace dsv3::cuda
