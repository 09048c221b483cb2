// MLA prefill attention without its score matrix (FlashAttention-2, Dao 2023, sections 3.1-3.2):
// each block takes 128 query rows of one head and walks the causally visible keys 64 at a time,
// keeping a running max m, sum l and output O per row in registers, so that no [rows, keys] scores
// or probabilities go through memory. The cuBLAS path (cuda_mla.cpp) wrote and read those four
// times: at a 32K-token prompt some 137 GB a layer.
//
// Products on FP16 tensor cores (mma.sync m16n8k16, float32 sums): q, k and v rounded once to FP16
// (11 significant bits, against the TF32 products' 11 of the cuBLAS path), the probabilities too.
// A warp holds 16 query rows: S = Q K^T comes out in mma's C layout, which is the A layout of the
// next product's operand once two 8-key tiles are paired, so P V needs no shuffle. K's and V's B
// fragments come by ldmatrix (V's transposed), two mma's worth a load: V's had been four 16-bit
// loads a product (Moonlight FP8 prefill on an H100: 8K 1.12x, 32K 1.25x faster by ldmatrix). Q
// carries the softmax scale, and only tiles that reach past a warp's first row are masked (8K
// 1.013x, 32K 1.03x). DeepSeek's own head widths (qk 192, v 128) take mla_prefill_wgmma.cu's kernel,
// on warpgroup tensor cores; this one takes other widths of whole 16-column steps.
#include <cuda_fp16.h>

#include "dsv3/backend/cuda/copy_async.cuh"
#include "dsv3/backend/cuda/flash_rows.cuh"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/mla_expanded_kv.cuh"
#include "dsv3/backend/cuda/mla_prefill_wgmma.h"
#include "dsv3/backend/cuda/mma.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kWarps = 8, kWarpRows = 16, kBlockRows = kWarps * kWarpRows, kTileKeys = 64, kKeyTiles = kTileKeys / 8;
constexpr int kMaxQkSteps = kMaxPrefillQk / 16, kMaxVTiles = kMaxPrefillV / 8;

// Shared-memory rows of k and v are 8 halves longer than their width: a row of 4 mod 8 words (and
// 16-byte aligned, as ldmatrix wants), so that the 8 rows a fragment load touches fall in distinct
// banks.
__host__ __device__ inline int padded(int width) { return width + 8; }

// One block a context row: k[h][j] = (k_nope of head h, the shared rotated k_pe), v[h][j], in FP16,
// head-major so that a tile of a head's keys is one run of memory.
__global__ void pack_kv_half_kernel(MlaDims dims, DeviceMatrix kv, DeviceMatrix latent, int64_t context, __half* k,
                                    __half* v) {
  const int64_t j = blockIdx.x;
  for (int i = threadIdx.x; i < dims.n_heads * dims.qk(); i += blockDim.x) {
    const int h = i / dims.qk(), d = i % dims.qk();
    k[(h * context + j) * dims.qk() + d] = __float2half_rn(expanded_key(dims, kv, latent, j, h, d));
  }
  for (int i = threadIdx.x; i < dims.n_heads * dims.v_dim; i += blockDim.x) {
    const int h = i / dims.v_dim, d = i % dims.v_dim;
    v[(h * context + j) * dims.v_dim + d] = __float2half_rn(expanded_value(dims, kv, j, h, d));
  }
}

// Copies keys [n_keys of `width` halves from `src`] into rows of padded(width) halves at `dst`,
// zeros past n_keys, 16 bytes a cp.async (width is a multiple of 16); the caller commits and waits.
__device__ inline void fill_tile_async(const __half* src, int n_keys, int width, __half* dst) {
  const int per_row = width / 8;
  const auto base = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  for (int e = threadIdx.x; e < kTileKeys * per_row; e += blockDim.x) {
    const int key = e / per_row, col = e % per_row * 8;
    const bool real = key < n_keys;
    copy_async16(base + uint32_t(key * padded(width) + col) * sizeof(__half),
                 src + (real ? int64_t(key) * width + col : 0), real);
  }
}

// Halves of shared memory a buffer (k and v of one tile), and the bytes of the kernel's two.
__host__ __device__ inline int buffer_halves(MlaDims dims) {
  return kTileKeys * (padded(dims.qk()) + padded(dims.v_dim));
}
inline size_t shared_bytes(MlaDims dims) { return sizeof(__half) * 2 * size_t(buffer_halves(dims)); }

// grid (ceil(n / kBlockRows), n_heads). Query row i (position start + i) sees keys 0..start + i.
// The last rows, which see the most keys, go first. Two tile buffers: the next tile's copies are in
// flight while this one is multiplied.
__global__ void __launch_bounds__(kWarps * 32, 1)
    flash_kernel(MlaDims dims, DeviceMatrix q, const __half* k, const __half* v, int64_t start, DeviceMatrix out) {
  extern __shared__ __half tiles[];
  const int qk = dims.qk(), v_dim = dims.v_dim, n_steps = qk / 16, n_vtiles = v_dim / 8;
  // Buffer b: [kTileKeys][padded(qk)] of k, then [kTileKeys][padded(v_dim)] of v.
  auto k_tile = [&](int b) { return tiles + b * buffer_halves(dims); };
  auto v_tile = [&](int b) { return k_tile(b) + kTileKeys * padded(qk); };
  const int h = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4;
  const int64_t n = q.rows, context = start + n;
  const int64_t first_row = int64_t(gridDim.x - 1 - blockIdx.x) * kBlockRows;
  const int64_t warp_row = first_row + warp * kWarpRows;
  const __half* k_head = k + int64_t(h) * context * qk;
  const __half* v_head = v + int64_t(h) * context * v_dim;

  uint32_t qa[kMaxQkSteps][4];
  query_fragments(dims, q, warp_row, h, qa);
  FlashRows rows;
  float o[kMaxVTiles][4] = {};

  const int64_t last_position = start + min(first_row + kBlockRows, n) - 1;
  const int64_t n_tiles = last_position / kTileKeys + 1;
  auto fill = [&](int64_t tile, int b) {
    const int64_t key0 = tile * kTileKeys;
    const int n_keys = int(min(int64_t(kTileKeys), context - key0));
    fill_tile_async(k_head + key0 * qk, n_keys, qk, k_tile(b));
    fill_tile_async(v_head + key0 * v_dim, n_keys, v_dim, v_tile(b));
  };
  fill(0, 0);
  copy_async_commit();
  for (int64_t tile = 0; tile < n_tiles; ++tile) {
    const int b = int(tile % 2);
    if (tile + 1 < n_tiles) fill(tile + 1, b ^ 1);  // into the buffer whose tile was done before the barrier below
    copy_async_commit();  // an empty group after the last tile: the wait below stays "all but one"
    copy_async_wait<1>();
    __syncthreads();  // every thread's copies of this tile have landed
    const int64_t key0 = tile * kTileKeys;
    const __half* k_s = k_tile(b);
    const __half* v_s = v_tile(b);
    // Every key of the tile past this warp's rows: nothing to add (the barriers stay shared).
    if (key0 <= start + warp_row + kWarpRows - 1) {
      // K's B fragments by ldmatrix, two 8-key tiles a load: lanes 8m .. 8m + 7 give key rows
      // 8 (nt + m / 2) + i, at columns 16 step + 8 (m % 2).
      float s[kKeyTiles][4] = {};
      const __half* k_lane = k_s + (lane / 16 * 8 + lane % 8) * padded(qk) + lane / 8 % 2 * 8;
#pragma unroll
      for (int step = 0; step < kMaxQkSteps; ++step) {
        if (step >= n_steps) break;
#pragma unroll
        for (int nt = 0; nt < kTileKeys / 8; nt += 2) {
          uint32_t kb[4];
          ldmatrix_x4(kb, k_lane + 8 * nt * padded(qk) + 16 * step);
          mma_f16(s[nt], qa[step], kb[0], kb[1]);
          mma_f16(s[nt + 1], qa[step], kb[2], kb[3]);
        }
      }

      // The causal mask where the tile reaches past the warp's first row.
      if (key0 + kTileKeys - 1 > start + warp_row) FlashRows::mask<kKeyTiles>(s, int(key0 - (start + warp_row)) - g);
      rows.take<kKeyTiles>(s, o);
      // P V, 16 keys (two 8-key tiles of S) a step.
#pragma unroll
      for (int kk = 0; kk < kTileKeys / 16; ++kk) {
        uint32_t pa[4];
        rows.probabilities<kKeyTiles>(s, kk, pa);
        // V's B fragments by ldmatrix.trans, two 8-column tiles a load: lanes 8m .. 8m + 7 give key
        // rows 16 kk + 8 (m % 2) + i, at columns 8 (vt + m / 2).
        const __half* v_lane = v_s + (16 * kk + lane / 8 % 2 * 8 + lane % 8) * padded(v_dim) + lane / 16 * 8;
#pragma unroll
        for (int vt = 0; vt < kMaxVTiles; vt += 2) {
          if (vt >= n_vtiles) break;
          uint32_t vb[4];
          ldmatrix_x4_trans(vb, v_lane + 8 * vt);
          mma_f16(o[vt], pa, vb[0], vb[1]);
          mma_f16(o[vt + 1], pa, vb[2], vb[3]);
        }
      }
    }
    __syncthreads();  // this buffer's reads are done before the next round's copies go into it
  }

  rows.total_sums();
  rows.store(o, dims, warp_row, h, n, out);
}

}  // namespace

bool mla_prefill_flash_ok(MlaDims dims) {
  return dims.qk() % 16 == 0 && dims.qk() <= kMaxPrefillQk && dims.v_dim % 16 == 0 && dims.v_dim <= kMaxPrefillV;
}

size_t mla_prefill_flash_scratch_bytes(MlaDims dims, int64_t context) {
  if (mla_prefill_wgmma_ok(dims)) return mla_prefill_wgmma_scratch_bytes(dims, context);
  return size_t(context) * dims.n_heads * (dims.qk() + dims.v_dim) * sizeof(__half);
}

void launch_mla_prefill_flash(MlaDims dims, DeviceMatrix q, DeviceMatrix kv, DeviceMatrix latent, int64_t start,
                              void* scratch, DeviceMatrix out, cudaStream_t stream) {
  if (mla_prefill_wgmma_ok(dims))
    return launch_mla_prefill_wgmma(dims, q, kv, latent, start, scratch, out, stream);
  const int64_t n = q.rows, context = start + n;
  if (n == 0) return;
  auto* k = static_cast<__half*>(scratch);
  __half* v = k + context * dims.n_heads * dims.qk();
  pack_kv_half_kernel<<<unsigned(context), 256, 0, stream>>>(dims, kv, latent, context, k, v);
  // The attribute is the kernel's: set once, for the widest operands allowed (a failure shows as the
  // launch's error).
  static const cudaError_t configured = [] {
    MlaDims widest{};
    widest.nope = kMaxPrefillQk, widest.v_dim = kMaxPrefillV;
    return cudaFuncSetAttribute(flash_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes(widest)));
  }();
  (void)configured;
  const dim3 grid(unsigned((n + kBlockRows - 1) / kBlockRows), unsigned(dims.n_heads));
  flash_kernel<<<grid, kWarps * 32, shared_bytes(dims), stream>>>(dims, q, k, v, start, out);
}

}  // namespace dsv3::cuda
