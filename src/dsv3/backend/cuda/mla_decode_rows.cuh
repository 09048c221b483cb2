// What the MLA decode attention kernels share: where a cached row lives (prefill's gather of cached
// rows too), and the asynchronous copies that bring cache tiles into shared memory.
#pragma once

#include <cstdint>

#include "dsv3/backend/cuda/copy_async.cuh"
#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// Positions and page sizes fit 32 bits (a context is an int): a 32-bit division, where a 64-bit one
// was a call of some 70 instructions a row.
__device__ inline const CacheValue* cache_row(DeviceCacheLayer cache, const int32_t* table, int position) {
  const int page_size = int(cache.page_size), page = table[position / page_size];
  return cache.data + (int64_t(page) * page_size + position % page_size) * cache.row_width;
}

// A shared-memory row stride in 32-bit words for rows of `words`: a multiple of 4 (16-byte vectors)
// that is 4 more than a multiple of 32, so that rows 0..7 at one word fall in banks 4 apart.
__host__ __device__ inline int tile_row_stride(int words) {
  const int w = (words + 3) / 4 * 4;
  return w + ((4 - w % 32) + 32) % 32;
}

// The shared-memory row stride of BF16 rows of `width` values (the cache tiles and the tensor-core
// kernel's queries): tile_row_stride's words, so that rows 4 apart (the CUDA-core kernel's two row
// quads of a warp) and a tensor-core fragment's 8 rows of 4 words fall in distinct banks.
__host__ __device__ inline int cache_tile_stride(int width) { return 2 * tile_row_stride((width + 1) / 2); }

// Whether a cache row is whole 16-byte vectors, copied by copy_tile_async.
__host__ __device__ inline bool cache_rows_are_vectors(int width, int64_t row_width) {
  constexpr int kPerVector = 16 / sizeof(CacheValue);
  return width % kPerVector == 0 && row_width % kPerVector == 0;
}

// The kTile cache rows from position t0 into `tile` (rows `stride` values apart), 16-byte copies in
// one copy group; rows from n_rows on as zeros. Warp w takes rows w, w + kWarps, ...: it looks up
// their pages first, all at once, then copies them a lane a vector. (Thread-strided vectors each
// looked up their row's page before their copy: 18 dependent table reads a thread before its copies
// were all in flight; H200, Moonlight fp8 batch-1 decode 366 -> 382 tok/s.) Needs
// cache_rows_are_vectors.
template <int kTile, int kWarps>
__device__ inline void copy_tile_async(DeviceCacheLayer cache, const int32_t* table, int t0, int n_rows, int width,
                                       int stride, CacheValue* tile) {
  static_assert(kTile % kWarps == 0);
  constexpr int kRowsPerWarp = kTile / kWarps, kPerVector = 16 / sizeof(CacheValue);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const CacheValue* rows[kRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int r = warp + j * kWarps;
    rows[j] = r < n_rows ? cache_row(cache, table, t0 + r) : cache.data;
  }
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int r = warp + j * kWarps;
    for (int v = lane; v < width / kPerVector; v += 32)
      copy_async16(tile + r * stride + kPerVector * v, rows[j] + kPerVector * v, r < n_rows);
  }
  copy_async_commit();
}

// The queries of heads h0.. of an item into shared rows `stride` apart, each value through `convert`:
// warp w takes heads w, w + kWarps, ... of the kHeads, a head's latent row (q_latent, the item's
// [n_heads][d_c]) then its rotated q_pe (q_row, the item's query row), every load of a head issued
// before its first store. Heads past n_heads are zeros: finite scores, never written out. (A
// block-wide loop over all the values divided each value's index by the row's width: most of the
// CUDA-core kernel's code.)
template <int kHeads, int kWarps, class T, class Convert>
__device__ inline void stage_queries(const MlaDims& dims, const float* q_latent, const float* q_row, int h0,
                                     int n_heads, int stride, T* q_s, const Convert& convert) {
  constexpr int kLatentPerLane = kMaxDecodeLatent / 32, kRopePerLane = kMaxDecodeRope / 32;
  const int lane = int(threadIdx.x % 32);
  for (int h = int(threadIdx.x / 32); h < kHeads; h += kWarps) {
    const bool real = h < n_heads;
    const float* latent = q_latent + int64_t(h0 + h) * dims.d_c;
    const float* pe = q_row + (h0 + h) * dims.qk() + dims.nope;
    float v[kLatentPerLane + kRopePerLane];
#pragma unroll
    for (int j = 0; j < kLatentPerLane; ++j) {
      const int c = lane + 32 * j;
      v[j] = real && c < dims.d_c ? latent[c] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kRopePerLane; ++j) {
      const int c = lane + 32 * j;
      v[kLatentPerLane + j] = real && c < dims.rope ? pe[c] : 0.0f;
    }
    T* row = q_s + h * stride;
#pragma unroll
    for (int j = 0; j < kLatentPerLane; ++j)
      if (lane + 32 * j < dims.d_c) row[lane + 32 * j] = convert(v[j]);
#pragma unroll
    for (int j = 0; j < kRopePerLane; ++j)
      if (lane + 32 * j < dims.rope) row[dims.d_c + lane + 32 * j] = convert(v[kLatentPerLane + j]);
  }
}

// At the top of a tile's step: once every thread is done with the previous tile, its buffer takes
// the rows of the tile after this one (fill(first row, buffer), one copy group), and this tile's
// copies are waited for.
template <class Fill>
__device__ inline void next_tile(int t0, int end, int tile_rows, CacheValue* next_buffer, const Fill& fill) {
  __syncthreads();
  if (t0 + tile_rows < end) {
    fill(t0 + tile_rows, next_buffer);
    copy_async_wait<1>();  // all but the tile just asked for
  } else {
    copy_async_wait<0>();
  }
  __syncthreads();
}

// A tile's step of online softmax (Milakov and Gimelshein 2018, "Online normalizer calculation for
// softmax") for one head whose scores kLanes lanes of a warp hold, a row each (-inf where there is
// none): returns the row's exp(s - m_new), and the first of the lanes updates the head's running max
// m, sum l and the factor f its running output is rescaled by.
template <int kLanes>
__device__ inline float online_softmax_step(float s, float* m, float* l, float* f) {
  float tile_max = s;
  for (int offset = kLanes / 2; offset > 0; offset /= 2)
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
  const float m_old = *m, m_new = fmaxf(m_old, tile_max);
  const float p = expf(s - m_new);
  float sum = p;
  for (int offset = kLanes / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  __syncwarp();  // every lane has read m
  if (threadIdx.x % kLanes == 0) {
    const float factor = expf(m_old - m_new);
    *m = m_new, *l = *l * factor + sum, *f = factor;
  }
  return p;
}

}  // namespace dsv3::cuda
