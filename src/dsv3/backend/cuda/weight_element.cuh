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

// 16 weight bytes, read once: not kept in L1, which is left to the activations every row reuses. A
// coherent load (ld.global, not ld.global.nc), so that the kernels that ask for their first weights
// before wait_for_inputs() have them in flight there (chained_launch.cuh): with .nc, ptxas put the
// wait ahead of them in the BF16 linear_small kernels (H200, Moonlight batch-1 decode: BF16 349.7 ->
// 354.6 tok/s, FP8 413.1 -> 414.5). Volatile: the compiler took a plain asm statement for a pure
// function and issued it where the source's guard was false (all of a lane's chunks, the ones past
// its row or part too; moe_mma.cu's PTX), which compute-sanitizer reported as reads past the end of
// an expert's down weight (bench/RESULTS.md).
__device__ inline uint4 load_weight_vector(const uint8_t* p) {
  uint4 v;
  asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// Word i of a vector; i is a compile-time constant wherever the callers unroll.
__device__ inline uint32_t vector_word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// 16 stored bytes hold kElems elements; widen() gives group g of them (elements 4g..4g+3) as float32.
template <DType D>
struct WeightVector;

template <>
struct WeightVector<DType::F32> {
  static constexpr int kElems = 4;
  __device__ static void widen(const uint4& v, int, float (&out)[4]) {
    out[0] = __uint_as_float(v.x), out[1] = __uint_as_float(v.y);
    out[2] = __uint_as_float(v.z), out[3] = __uint_as_float(v.w);
  }
};

template <>
struct WeightVector<DType::BF16> {
  static constexpr int kElems = 8;
  __device__ static void widen(const uint4& v, int g, float (&out)[4]) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint32_t word = vector_word(v, 2 * g + i);
      out[2 * i] = __uint_as_float(word << 16);
      out[2 * i + 1] = __uint_as_float(word & 0xffff0000u);
    }
  }
};

template <>
struct WeightVector<DType::F16> {
  static constexpr int kElems = 8;
  __device__ static void widen(const uint4& v, int g, float (&out)[4]) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint32_t word = vector_word(v, 2 * g + i);
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&word));
      out[2 * i] = f.x, out[2 * i + 1] = f.y;
    }
  }
};

template <>
struct WeightVector<DType::F8_E4M3> {
  static constexpr int kElems = 16;
  __device__ static void widen(const uint4& v, int g, float (&out)[4]) {
    const uint32_t word = vector_word(v, g);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const auto pair = __nv_fp8x2_storage_t(word >> (16 * i));
      const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3)));
      out[2 * i] = f.x, out[2 * i + 1] = f.y;
    }
  }
};

}  // namespace dsv3::cuda
