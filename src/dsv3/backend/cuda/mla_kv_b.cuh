// kv_b_proj as MLA decode reads it (mla_decode.cu, mla_batch_products.cu): as stored, BF16 or FP8 in
// 128 x 128 blocks (decode_kv_b_as_stored), else a float32 copy.
#pragma once

#include <cstdint>

#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::cuda {

// The stored bits of kv_b_proj's element (row, col), for a weight of dtype D (F32, BF16 or FP8):
// plain loads, which stay ahead of the kernels' wait (chained_launch.cuh).
template <DType D>
__device__ __forceinline__ uint32_t kv_b_bits(const DeviceWeight& w, int64_t row, int64_t col) {
  const int64_t i = row * w.cols + col;
  if constexpr (D == DType::F32) return static_cast<const uint32_t*>(w.data)[i];
  else if constexpr (D == DType::BF16) return static_cast<const uint16_t*>(w.data)[i];
  else return static_cast<const uint8_t*>(w.data)[i];
}

// Those bits as float32, times `scale` for FP8 (its block scale).
template <DType D>
__device__ __forceinline__ float kv_b_value(uint32_t bits, float scale) {
  if constexpr (D == DType::F32) return __uint_as_float(bits);
  else if constexpr (D == DType::BF16) return bf16_bits_to_float(bits);
  else return fp8_e4m3_to_float(uint8_t(bits)) * scale;
}

// The FP8 block scale of (row, col): 128 x 128 blocks (decode_kv_b_as_stored); 1 for other dtypes.
template <DType D>
__device__ __forceinline__ float kv_b_scale(const DeviceWeight& w, int64_t row, int64_t col) {
  if constexpr (D == DType::F8_E4M3) return w.scale_inv[row / 128 * (w.cols / 128) + col / 128];
  else return 1.0f;
}

// The instantiation of a kernel for kv_b_proj's dtype as the decode kernels read it.
template <typename Kernel>
inline Kernel by_kv_b_dtype(const DeviceWeight& w, Kernel f32, Kernel bf16, Kernel fp8) {
  return w.dtype == DType::BF16 ? bf16 : w.dtype == DType::F8_E4M3 ? fp8 : f32;
}

}  // namespace dsv3::cuda
