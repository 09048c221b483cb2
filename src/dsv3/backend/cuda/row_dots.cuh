// The inner loop of every weight-streaming kernel: the warps of one output row read it once, in
// 16-byte vectors of its stored dtype (or element by element where shapes or alignment forbid),
// and multiply it into up to kTokens input rows held as pointers.
#pragma once

#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::cuda {

constexpr int kRowWarps = 8;  // warps of a weight-streaming block

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// acc[t] += W[row] . x_rows[t] over this warp's share (part of wpr) of the columns.
template <DType D, int kTokens>
__device__ void row_dots_vector(const DeviceWeight& w, int64_t row, int part, int wpr, const float* const* x_rows,
                                int n_tokens, float (&acc)[kTokens]) {
  using Vec = WeightVector<D>;
  constexpr int kElems = Vec::kElems;
  const int lane = threadIdx.x % 32;
  const int64_t K = w.cols;
  const uint8_t* w_row = static_cast<const uint8_t*>(w.data) + row * K * (16 / kElems);  // 16 / kElems bytes each
  const float* scale_row = nullptr;
  if constexpr (D == DType::F8_E4M3) scale_row = w.scale_inv + (row / w.block_out) * ((K + w.block_in - 1) / w.block_in);
#pragma unroll 2
  for (int64_t k = (int64_t(part) * 32 + lane) * kElems; k < K; k += int64_t(wpr) * 32 * kElems) {
    float wv[kElems];
    Vec::load(w_row + k * (16 / kElems), wv);
    if constexpr (D == DType::F8_E4M3) {
      const float s = scale_row[k / w.block_in];
#pragma unroll
      for (int e = 0; e < kElems; ++e) wv[e] *= s;
    }
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      if (t < n_tokens) {
        const float* xp = x_rows[t] + k;
#pragma unroll
        for (int e = 0; e < kElems; e += 4) {
          const float4 xv = *reinterpret_cast<const float4*>(xp + e);
          acc[t] += wv[e] * xv.x + wv[e + 1] * xv.y + wv[e + 2] * xv.z + wv[e + 3] * xv.w;
        }
      }
    }
  }
}

template <int kTokens>
__device__ void row_dots_scalar(const DeviceWeight& w, int64_t row, int part, int wpr, const float* const* x_rows,
                                int n_tokens, float (&acc)[kTokens]) {
  const int lane = threadIdx.x % 32;
  for (int64_t k = int64_t(part) * 32 + lane; k < w.cols; k += int64_t(wpr) * 32) {
    const float wk = weight_element(w, row, k);
#pragma unroll
    for (int t = 0; t < kTokens; ++t)
      if (t < n_tokens) acc[t] += wk * x_rows[t][k];
  }
}

// Dispatch on the stored dtype; `vector` says the 16-byte path's conditions hold.
template <int kTokens>
__device__ void row_dots(const DeviceWeight& w, bool vector, int64_t row, int part, int wpr, const float* const* x_rows,
                         int n_tokens, float (&acc)[kTokens]) {
  if (!vector) return row_dots_scalar<kTokens>(w, row, part, wpr, x_rows, n_tokens, acc);
  switch (w.dtype) {
    case DType::F32: return row_dots_vector<DType::F32, kTokens>(w, row, part, wpr, x_rows, n_tokens, acc);
    case DType::BF16: return row_dots_vector<DType::BF16, kTokens>(w, row, part, wpr, x_rows, n_tokens, acc);
    case DType::F16: return row_dots_vector<DType::F16, kTokens>(w, row, part, wpr, x_rows, n_tokens, acc);
    case DType::F8_E4M3: return row_dots_vector<DType::F8_E4M3, kTokens>(w, row, part, wpr, x_rows, n_tokens, acc);
  }
}

// Sums each token's partials over the wpr warps of a row (consecutive warps of the block). Every
// thread must call it. Afterwards lane t < n_tokens of the row's first warp returns true with the
// total for token t.
template <int kTokens>
__device__ bool reduce_row(float (&acc)[kTokens], int part, int wpr, int n_tokens, float& total) {
  __shared__ float partial[kRowWarps][kTokens];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = warp_sum(acc[t]);
  if (lane == 0)
#pragma unroll
    for (int t = 0; t < kTokens; ++t) partial[warp][t] = acc[t];
  __syncthreads();
  total = 0.0f;
  if (part != 0 || lane >= n_tokens) return false;
  for (int p = 0; p < wpr; ++p) total += partial[warp + p][lane];
  return true;
}

// Host side: warps sharing a row, so that few rows (times `copies`, the matrices a launch streams)
// still give every SM enough loads in flight.
inline int warps_per_row(const DeviceWeight& w, int64_t copies = 1) {
  int wpr = 1;
  while (wpr < kRowWarps && w.rows * copies * wpr < 8192 && w.cols >= int64_t(wpr) * 2 * 32 * 16) wpr *= 2;
  return wpr;
}

}  // namespace dsv3::cuda
