// Warp-wide matrix products on tensor cores: mma.sync m16n8k16 with 16-bit operands and float32
// sums (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"). Lane (g, t) =
// (lane / 4, lane % 4) holds A's (g, 2t..2t+1), (g + 8, 2t..2t+1), (g, 2t+8..2t+9), (g + 8, 2t+8..2t+9),
// B's (2t..2t+1, g) and (2t+8..2t+9, g), and D's (g, 2t..2t+1) and (g + 8, 2t..2t+1).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace dsv3::cuda {

// d += a b, a 16x16 (row-major fragment), b 16x8 (column-major fragment), BF16 operands.
__device__ inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The same with FP16 operands.
__device__ inline void mma_f16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 matrices of 16-bit values from shared memory (PTX ISA, "ldmatrix"): lanes 8i .. 8i + 7
// give the addresses of matrix i's 8 rows (16 bytes each, 16-byte aligned), and lane (g, t) gets
// r[i] = matrix i's (g, 2t..2t+1); with .trans, its (2t..2t+1, g) (a B fragment from row-major k x n).
__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// (x0, x1) as BF16 operands in two parts, x = high + low to 16 bits of mantissa: both multiplied
// into float32 sums, a product as accurate as float32 activations against a BF16 operand.
__device__ inline void split_bf16(float x0, float x1, uint32_t& high, uint32_t& low) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const float2 f = __bfloat1622float2(h);
  const __nv_bfloat162 l = __floats2bfloat162_rn(x0 - f.x, x1 - f.y);
  high = *reinterpret_cast<const uint32_t*>(&h), low = *reinterpret_cast<const uint32_t*>(&l);
}

}  // namespace dsv3::cuda
