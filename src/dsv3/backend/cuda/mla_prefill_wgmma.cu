// MLA prefill attention in one pass over the keys on Hopper's warpgroup tensor cores (wgmma.cuh), for
// DeepSeek's head widths (qk 192, v 128): mla_prefill_flash.cu's algorithm
// (FlashAttention-2 with the same FP16 operands and float32 sums, flash_rows.cuh), its two products a
// tile as warpgroup products instead of mma.sync.
//
// Counting first (Moonlight, 16 heads, qk 192, v 128): a 32K-token prompt's attention is 2 * 16 * (192
// + 128) * 32768^2 / 2 = 5.5 TFLOP a layer, about 7 ms at the H100's measured ~800 TFLOP/s of 16-bit
// products. The mma.sync kernel took 30.3 ms (181 TFLOP/s), this one 15.4 (357 TFLOP/s; Nsight
// Compute, bench/RESULTS.md). Tried and slower: Q from shared memory with the next tile's scores asked
// for before a tile's softmax (17.5 ms), a tile's P V left in flight across the barrier (16.7), blocks
// of one warpgroup two to an SM (18.5).
//
// Roles. A block is two warpgroups of 64 query rows of one head (warp w of the block holding rows
// 16w.., as in the mma.sync kernel) and walks the keys 64 at a time. S = Q K^T: A, Q, from registers
// (mma.sync's A layout); B, the tile's 64 keys, from shared memory, K-major (a key's qk values in a
// row), in 64-column atoms of the 128-byte swizzle. O += P V: A, P, from the registers S came out in
// (two 8-key tiles of the C layout are a k16 step of the A layout); B, V's tile transposed (a value
// column's 64 keys in a row, one atom of 128 rows), so that both B operands are K-major and no
// transposing descriptor is needed. pack_kv_wgmma_kernel writes K head-major and V^T so, in FP16.
//
// Schedule. With 224-252 registers a thread, an SM holds one block: two warpgroups. Taking a tile in
// step, their softmaxes left the tensor cores idle at the same time (29% busy); they take turns
// instead (flash_wgmma_kernel), 1.05x.
#include <cuda_fp16.h>

#include "dsv3/backend/cuda/copy_async.cuh"
#include "dsv3/backend/cuda/cuda_check.h"
#include "dsv3/backend/cuda/flash_rows.cuh"
#include "dsv3/backend/cuda/mla_expanded_kv.cuh"
#include "dsv3/backend/cuda/mla_prefill_wgmma.h"
#include "dsv3/backend/cuda/wgmma.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kWarpgroups = 2, kThreads = 128 * kWarpgroups, kBlockRows = 64 * kWarpgroups;
constexpr int kTileKeys = 64, kKeyTiles = kTileKeys / 8;
// Every DeepSeek V2/V3 model's head widths: a fixed count of products a tile, no branch between them
// (which would make ptxas wait out each product before the next).
constexpr int kQk = 192, kVDim = 128;
constexpr int kQkSteps = kQk / 16;
static_assert(kQk <= kMaxPrefillQk && kVDim <= kMaxPrefillV);
// A stage in shared memory: K's tile, qk / 64 atoms of 64 keys x 128 bytes, then V^T's, 128 rows of
// 64 keys.
constexpr int kKAtomBytes = kTileKeys * 128, kKBytes = kQk / 64 * kKAtomBytes;
constexpr int kStageBytes = kKBytes + kVDim * 128, kStages = 3;
constexpr size_t kSharedBytes = kStages * size_t(kStageBytes) + 1024;  // and room to align to 1024

// Keys of the packed V^T's rows: the context in whole tiles, the keys past it zeros.
__host__ __device__ inline int64_t padded_keys(int64_t context) {
  return (context + kTileKeys - 1) / kTileKeys * kTileKeys;
}

// grid (key tiles, n_heads): head h's keys of the tile as k[h][j] = (k_nope of head h, the shared
// rotated k_pe) and its values as vt[h][d][j], in FP16; V goes through shared memory to be written a
// value column at a time.
__global__ void __launch_bounds__(256) pack_kv_wgmma_kernel(MlaDims dims, DeviceMatrix kv, DeviceMatrix latent,
                                                            int64_t context, __half* k, __half* vt) {
  __shared__ __half v_tile[kTileKeys][kVDim + 2];  // an odd word stride: a column's reads in distinct banks
  constexpr int qk = kQk;
  const int h = blockIdx.y;
  const int64_t key0 = int64_t(blockIdx.x) * kTileKeys, keys = padded_keys(context);
  for (int i = threadIdx.x; i < kTileKeys * qk; i += blockDim.x) {
    const int64_t j = key0 + i / qk;
    const int d = i % qk;
    if (j >= context) break;
    k[(h * context + j) * qk + d] = __float2half_rn(expanded_key(dims, kv, latent, j, h, d));
  }
  for (int i = threadIdx.x; i < kTileKeys * kVDim; i += blockDim.x) {
    const int r = i / kVDim, d = i % kVDim;
    const int64_t j = key0 + r;
    v_tile[r][d] = __float2half_rn(j < context ? expanded_value(dims, kv, j, h, d) : 0.0f);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kVDim * kTileKeys; i += blockDim.x) {
    const int d = i / kTileKeys, r = i % kTileKeys;
    vt[(int64_t(h) * kVDim + d) * keys + key0 + r] = v_tile[r][d];
  }
}

// grid (ceil(n / kBlockRows), n_heads). Query row i (position start + i) sees keys 0..start + i.
// The last rows, which see the most keys, go first. The two warpgroups take turns on the tensor cores
// (FlashAttention-3's ping-pong, Shah et al. 2024, section 3.1): in round r, warpgroup 0 multiplies
// tile r's scores, takes their softmax and multiplies P V; warpgroup 1 first takes the softmax of tile
// r - 1's scores (while 0's are multiplied), then asks for that tile's P V and tile r's scores at once
// (while 0 takes its softmax). The copies of tile r + 1 are in flight meanwhile; a stage is free once
// both warpgroups are done with it: three stages.
__global__ void __launch_bounds__(kThreads, 1) flash_wgmma_kernel(MlaDims dims, DeviceMatrix q, const __half* k,
                                                                  const __half* vt, int64_t start, DeviceMatrix out) {
  extern __shared__ uint8_t shared_raw[];
  uint8_t* stages = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(shared_raw) + 1023) / 1024 * 1024);
  constexpr int qk = kQk, pieces = qk / 8;
  const int h = blockIdx.y, warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4;
  // The warpgroup as a shuffle's value, which the compiler knows to be one a warp: otherwise it
  // serializes the products in the paths that depend on it.
  const int wg = __shfl_sync(0xffffffffu, warp / 4, 0);
  const int64_t n = q.rows, context = start + n, keys = padded_keys(context);
  const int64_t first_row = int64_t(gridDim.x - 1 - blockIdx.x) * kBlockRows;
  const int64_t warp_row = first_row + warp * 16, group_last_row = first_row + wg * 64 + 63;
  const __half* k_head = k + int64_t(h) * context * qk;
  const __half* vt_head = vt + int64_t(h) * kVDim * keys;

  uint32_t qa[kQkSteps][4];
  query_fragments(dims, q, warp_row, h, qa);
  FlashRows rows;
  float o[kVDim / 8][4] = {};

  const int64_t last_position = start + min(first_row + kBlockRows, n) - 1;
  const int64_t n_tiles = last_position / kTileKeys + 1;
  const auto stages_address = static_cast<uint32_t>(__cvta_generic_to_shared(stages));
  // A tile's copies, 16 bytes each to their swizzled place (piece p of row r at piece p ^ (r % 8)):
  // K's keys past the context are zero-filled; V^T's rows have whole tiles.
  auto fill = [&](int64_t tile) {
    const int64_t key0 = tile * kTileKeys;
    const uint32_t base = stages_address + uint32_t(tile % kStages) * kStageBytes;
    for (int e = threadIdx.x; e < kTileKeys * pieces; e += kThreads) {
      const int r = e / pieces, p = e % pieces;
      const bool real = key0 + r < context;
      copy_async16(base + p / 8 * kKAtomBytes + r * 128 + ((p % 8) ^ (r % 8)) * 16,
                   k_head + (real ? (key0 + r) * qk + 8 * p : 0), real);
    }
    for (int e = threadIdx.x; e < kVDim * 8; e += kThreads) {
      const int d = e / 8, p = e % 8;
      copy_async16(base + kKBytes + d * 128 + (p ^ (d % 8)) * 16, vt_head + d * keys + key0 + 8 * p, true);
    }
  };
  const uint64_t stages_operand = swizzled_operand(stages);

  // s = the tile's scores, asked of the tensor cores (committed by the caller).
  auto ask_scores = [&](float (&s)[kKeyTiles][4], int64_t tile) {
    const uint64_t k_operand = operand_at(stages_operand, uint32_t(tile % kStages) * kStageBytes);
#pragma unroll
    for (int step = 0; step < kQkSteps; ++step)
      wgmma_m64n64k16_f16(s, qa[step], operand_at(k_operand, step / 4 * kKAtomBytes + 32 * (step % 4)), step > 0);
  };
  uint32_t pa[kTileKeys / 16][4];  // P of the P V in flight
  // o += P V of the tile whose scores are s (asked of the tensor cores, committed by the caller).
  auto ask_values = [&](float (&s)[kKeyTiles][4], int64_t tile) {
    const int64_t key0 = tile * kTileKeys;
    // The causal mask where the tile reaches past the warp's first row.
    if (key0 + kTileKeys - 1 > start + warp_row) FlashRows::mask<kKeyTiles>(s, int(key0 - (start + warp_row)) - g);
    rows.take<kKeyTiles>(s, o);
#pragma unroll
    for (int kk = 0; kk < kTileKeys / 16; ++kk) rows.probabilities<kKeyTiles>(s, kk, pa[kk]);
    const uint64_t v_operand = operand_at(stages_operand, uint32_t(tile % kStages) * kStageBytes + kKBytes);
    hold(o);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kTileKeys / 16; ++kk) wgmma_m64n128k16_f16(o, pa[kk], operand_at(v_operand, 32 * kk), 1);
  };
  // Whether this warpgroup's rows see any key of the tile.
  auto sees = [&](int64_t tile) { return tile < n_tiles && tile * kTileKeys <= start + group_last_row; };

  float s[kKeyTiles][4];
  fill(0);
  copy_async_commit();
  for (int64_t round = 0; round <= n_tiles; ++round) {
    copy_async_wait<0>();
    fence_async_shared();
    __syncthreads();  // tile `round` has landed; tile round - 2 is done with
    if (round + 1 < n_tiles) fill(round + 1);
    copy_async_commit();
    if (wg == 0) {
      // Every key of the tile past this warpgroup's rows: nothing to add (the barriers stay shared).
      if (!sees(round)) continue;
      wgmma_fence();
      ask_scores(s, round);
      wgmma_commit();
      wgmma_wait<0>();
      hold(s);
      ask_values(s, round);
      wgmma_commit();
      wgmma_wait<0>();
      hold(o);
      hold(pa);
    } else {
      if (round == 0) {
        wgmma_fence();
        ask_scores(s, round);
      } else if (sees(round - 1)) {
        // Tile round's scores even where its rows see none of it (then never used): a product in a
        // branch of its own is waited out before the next (ptxas).
        ask_values(s, round - 1);
        ask_scores(s, round);
      } else {
        continue;
      }
      wgmma_commit();
      wgmma_wait<0>();
      hold(o);
      hold(pa);
      hold(s);
    }
  }
  rows.total_sums();
  rows.store(o, dims, warp_row, h, n, out);
}

}  // namespace

bool mla_prefill_wgmma_ok(MlaDims dims) {
  return dims.qk() == kQk && dims.v_dim == kVDim;
}

size_t mla_prefill_wgmma_scratch_bytes(MlaDims dims, int64_t context) {
  return (size_t(context) * dims.qk() + size_t(padded_keys(context)) * kVDim) * dims.n_heads * sizeof(__half);
}

void launch_mla_prefill_wgmma(MlaDims dims, DeviceMatrix q, DeviceMatrix kv, DeviceMatrix latent, int64_t start,
                              void* scratch, DeviceMatrix out, cudaStream_t stream) {
  const int64_t n = q.rows, context = start + n;
  if (n == 0) return;
  auto* k = static_cast<__half*>(scratch);
  __half* vt = k + context * dims.n_heads * dims.qk();
  const dim3 pack_grid(unsigned(padded_keys(context) / kTileKeys), unsigned(dims.n_heads));
  pack_kv_wgmma_kernel<<<pack_grid, 256, 0, stream>>>(dims, kv, latent, context, k, vt);
  static const cudaError_t configured =
      cudaFuncSetAttribute(flash_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSharedBytes));
  (void)configured;  // a failure shows as the launch's error
  const dim3 grid(unsigned((n + kBlockRows - 1) / kBlockRows), unsigned(dims.n_heads));
  flash_wgmma_kernel<<<grid, kThreads, kSharedBytes, stream>>>(dims, q, k, vt, start, out);
}

}  // namespace dsv3::cuda
