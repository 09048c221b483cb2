// A warp's 16 query rows in MLA prefill's one-pass attention kernels (FlashAttention-2, Dao 2023,
// section 3.1): their Q fragments, online softmax and output, as tensor-core products hold them.
// Lane (g, t) has, for each 8-key tile nt of a tile's scores s, rows g and g + 8 at keys 8 nt + 2t
// and + 1 in s[nt][0], s[nt][1] and s[nt][2], s[nt][3] (mma.sync's C layout, and a warpgroup
// product's, warp w holding its rows 16w..); the output sums o likewise, by 8-column tiles. The
// scores come in base 2, already scaled: exp(x scale) = exp2(x scale log2(e)).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

__device__ inline uint32_t half_pair(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Rows warp_row + g and + 8 of head h of q as A fragments of k16 steps (rows past q's are zeros,
// never stored), times the softmax scale in base 2, so that S comes out scaled.
template <int kMaxSteps>
__device__ void query_fragments(MlaDims dims, DeviceMatrix q, int64_t warp_row, int h, uint32_t (&qa)[kMaxSteps][4]) {
  const int qk = dims.qk(), g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  const int64_t n = q.rows;
  const float scale = dims.softmax_scale * 1.4426950408889634f;
  auto scaled_pair = [&](float lo, float hi) { return half_pair(lo * scale, hi * scale); };
  const float* row_lo = q.data + min(warp_row + g, n - 1) * q.stride + h * qk;
  const float* row_hi = q.data + min(warp_row + g + 8, n - 1) * q.stride + h * qk;
  const bool lo_in = warp_row + g < n, hi_in = warp_row + g + 8 < n;
#pragma unroll
  for (int step = 0; step < kMaxSteps; ++step) {
    if (step >= qk / 16) break;
    const int c = 16 * step + 2 * t;
    qa[step][0] = lo_in ? scaled_pair(row_lo[c], row_lo[c + 1]) : 0u;
    qa[step][1] = hi_in ? scaled_pair(row_hi[c], row_hi[c + 1]) : 0u;
    qa[step][2] = lo_in ? scaled_pair(row_lo[c + 8], row_lo[c + 9]) : 0u;
    qa[step][3] = hi_in ? scaled_pair(row_hi[c + 8], row_hi[c + 9]) : 0u;
  }
}

// Rows g and g + 8 of a warp: their running maxima m and sums l (l of this lane's columns only, until
// total_sums()).
struct FlashRows {
  float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;
  // The maxima after the last tile taken in, as the base of its exponentials: 0 for a row that has
  // seen no key yet (its terms stay 0, not NaN).
  float base_lo = 0.0f, base_hi = 0.0f;

  // Keys past a row's position out of s: first_key is the tile's first key's position less row g's.
  template <int kKeyTiles>
  __device__ static void mask(float (&s)[kKeyTiles][4], int first_key) {
    const int t = threadIdx.x % 4;
#pragma unroll
    for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int past_lo = first_key + 8 * nt + 2 * t + i;  // the key's position less row g's
        if (past_lo > 0) s[nt][i] = -INFINITY;
        if (past_lo > 8) s[nt][2 + i] = -INFINITY;
      }
  }

  // Takes in a tile's scores: the new maxima (a row's 4 lanes are one quad), and what came before (l
  // and the output sums o) rescaled to them.
  template <int kKeyTiles, int kOutTiles>
  __device__ void take(const float (&s)[kKeyTiles][4], float (&o)[kOutTiles][4]) {
    float tile_lo = -INFINITY, tile_hi = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 2; ++i) tile_lo = fmaxf(tile_lo, s[nt][i]), tile_hi = fmaxf(tile_hi, s[nt][2 + i]);
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      tile_lo = fmaxf(tile_lo, __shfl_xor_sync(0xffffffffu, tile_lo, offset));
      tile_hi = fmaxf(tile_hi, __shfl_xor_sync(0xffffffffu, tile_hi, offset));
    }
    const float new_lo = fmaxf(m_lo, tile_lo), new_hi = fmaxf(m_hi, tile_hi);
    base_lo = new_lo == -INFINITY ? 0.0f : new_lo, base_hi = new_hi == -INFINITY ? 0.0f : new_hi;
    const float keep_lo = exp2f(m_lo - base_lo), keep_hi = exp2f(m_hi - base_hi);
    m_lo = new_lo, m_hi = new_hi;
    l_lo *= keep_lo, l_hi *= keep_hi;
#pragma unroll
    for (int vt = 0; vt < kOutTiles; ++vt) {
      o[vt][0] *= keep_lo, o[vt][1] *= keep_lo;
      o[vt][2] *= keep_hi, o[vt][3] *= keep_hi;
    }
  }

  // P = exp2(s - m) for keys 16 kk .. 16 kk + 15 of the tile, added to l, as the A fragment of the
  // product P V: two 8-key tiles of the C layout are one k16 step of the A layout.
  template <int kKeyTiles>
  __device__ void probabilities(const float (&s)[kKeyTiles][4], int kk, uint32_t (&pa)[4]) {
    float p[2][4];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float(&tile)[4] = s[2 * kk + half];
      p[half][0] = exp2f(tile[0] - base_lo), p[half][1] = exp2f(tile[1] - base_lo);
      p[half][2] = exp2f(tile[2] - base_hi), p[half][3] = exp2f(tile[3] - base_hi);
      l_lo += p[half][0] + p[half][1], l_hi += p[half][2] + p[half][3];
    }
    pa[0] = half_pair(p[0][0], p[0][1]), pa[1] = half_pair(p[0][2], p[0][3]);
    pa[2] = half_pair(p[1][0], p[1][1]), pa[3] = half_pair(p[1][2], p[1][3]);
  }

  // l over the row's 4 lanes: every key's term.
  __device__ void total_sums() {
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      l_lo += __shfl_xor_sync(0xffffffffu, l_lo, offset);
      l_hi += __shfl_xor_sync(0xffffffffu, l_hi, offset);
    }
  }

  // o / l into out's rows warp_row + g and + 8 (those of the n rows), head h's v_dim columns. After
  // total_sums().
  template <int kOutTiles>
  __device__ void store(const float (&o)[kOutTiles][4], MlaDims dims, int64_t warp_row, int h, int64_t n,
                        DeviceMatrix out) const {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    const int64_t row_lo = warp_row + g, row_hi = row_lo + 8;
#pragma unroll
    for (int vt = 0; vt < kOutTiles; ++vt) {
      if (8 * vt >= dims.v_dim) break;
      const int col = h * dims.v_dim + 8 * vt + 2 * t;
      if (row_lo < n) {
        out.data[row_lo * out.stride + col] = o[vt][0] / l_lo;
        out.data[row_lo * out.stride + col + 1] = o[vt][1] / l_lo;
      }
      if (row_hi < n) {
        out.data[row_hi * out.stride + col] = o[vt][2] / l_hi;
        out.data[row_hi * out.stride + col + 1] = o[vt][3] / l_hi;
      }
    }
  }
};

}  // namespace dsv3::cuda
