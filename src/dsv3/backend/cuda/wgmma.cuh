// Warpgroup products on Hopper's tensor cores (wgmma, sm_90a; PTX ISA, "Asynchronous Warpgroup Level
// Matrix Multiply-Accumulate Instructions"). Four consecutive warps, a warpgroup, issue one product
// of A [64, 16] and B [16, N] into float32 sums D [64, N] that they hold in registers; the tensor
// cores run it asynchronously until wgmma_wait. Here A comes from registers, warp w of the group
// holding rows 16w..16w+15 as mma.sync m16n8k16 holds its A (mma.cuh), and B from shared memory
// through a descriptor. D: lane (g, t) of warp w holds, for n-tile j, D[16w + g][8j + 2t, +1] in
// d[4j], d[4j + 1] and D[16w + g + 8][8j + 2t, +1] in d[4j + 2], d[4j + 3].
#pragma once

#include <cstdint>

namespace dsv3::cuda {

// The descriptor of a K-major operand in shared memory in the 128-byte swizzle: rows of 64 16-bit
// values (128 bytes), 8-row groups 1024 bytes apart, the 16-byte pieces of row r stored at piece
// index ^ (r % 8). `tile` is 1024-byte aligned.
__device__ inline uint64_t swizzled_operand(const void* tile) {
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(tile));
  constexpr uint64_t kLeadingBytes = 16, kStrideBytes = 1024, kSwizzle128 = 1;
  return uint64_t(address & 0x3ffff) >> 4 | (kLeadingBytes >> 4) << 16 | (kStrideBytes >> 4) << 32 |
         kSwizzle128 << 62;
}

// The descriptor of the operand `bytes` further on in shared memory: another 1024-aligned tile, or
// a k16 step along the 128 bytes of a tile's rows (32 bytes a step), which the hardware swizzles as it
// does the tile's own addresses. The address field (bits 0-13, in 16-byte units) takes the sum
// without a carry while the operand stays in the 256 KB shared memory window.
__device__ __forceinline__ uint64_t operand_at(uint64_t descriptor, uint32_t bytes) {
  return descriptor + (bytes >> 4);
}

// Registers and shared memory written by ordinary instructions, before the products that read them.
__device__ inline void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ inline void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
// Waits until at most `kPending` committed groups of products are still running.
template <int kPending>
__device__ inline void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving reads or writes of v across this point, and v's register from
// being reused before it: for sums and A fragments that products in flight still use.
__device__ inline void hold(float& v) { asm volatile("" : "+f"(v)::"memory"); }
__device__ inline void hold(uint32_t& v) { asm volatile("" : "+r"(v)::"memory"); }
template <typename T, int kRows, int kCols>
__device__ inline void hold(T (&v)[kRows][kCols]) {
#pragma unroll
  for (int i = 0; i < kRows; ++i)
#pragma unroll
    for (int j = 0; j < kCols; ++j) hold(v[i][j]);
}

// Shared-memory stores of this thread (cp.async's too) made visible to the tensor cores' reads.
__device__ inline void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

#define DSV3_WGMMA_M64N128K16(TYPE)                                                                   \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %68, 0;\n"                                                  \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {"                             \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17,"          \
      "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33,"          \
      "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49,"          \
      "%50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"                     \
      "}, {%64, %65, %66, %67}, %69, p, 1, 1, 0;\n}"                                               \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), \
        "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), \
        "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), \
        "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), \
        "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), \
        "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), \
        "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(accumulate), "l"(b))

// d (+)= a b for 128 columns of B; accumulate 0 overwrites d.
__device__ inline void wgmma_m64n128k16_f16(float (&d)[64], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  DSV3_WGMMA_M64N128K16("f16");
}
__device__ inline void wgmma_m64n128k16_bf16(float (&d)[64], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  DSV3_WGMMA_M64N128K16("bf16");
}

#undef DSV3_WGMMA_M64N128K16

// The same by 8-column tiles, d[j] as d[4j..4j+3] above (the layout flash_rows.cuh takes).
__device__ inline void wgmma_m64n128k16_f16(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  wgmma_m64n128k16_f16(reinterpret_cast<float(&)[64]>(d), a, b, accumulate);
}

// d (+)= a b for 64 columns of B, by 8-column tiles as above; accumulate 0 overwrites d.
__device__ inline void wgmma_m64n64k16_f16(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %36, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17,"
      "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, {%32, %33, %34, %35}, %37, p, 1, 1, 0;\n}"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
        "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
        "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(accumulate), "l"(b));
}

}  // namespace dsv3::cuda
