// A row's residual add and RMS norm (Backend::add_rmsnorm, ResidualNorm) by one block of
// kNormThreads threads, for the kernels that end with it: the norm itself, and the last op of a
// sublayer that fuses it in (the MoE combine; linear_small's last block).
#pragma once

#include "dsv3/backend/cuda/block_reduce.cuh"
#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

constexpr int kNormThreads = 256;

// A thread's columns threadIdx.x + j * kNormThreads of a norm's weight, for rows up to kRowValues *
// kNormThreads wide, which stay in registers (wider ones are read twice, the weight with them). A
// stored weight: a chained kernel reads it before its wait (chained_launch.cuh), off the path of
// the row it is for.
template <int kRowValues>
struct NormWeights {
  const float* weight;
  int64_t cols;
  float w[kRowValues];

  __device__ __forceinline__ NormWeights(const float* weight_, int64_t cols_) : weight(weight_), cols(cols_) {
#pragma unroll
    for (int j = 0; j < kRowValues; ++j) w[j] = in_registers() && column(j) < cols ? weight[column(j)] : 0.0f;
  }
  __device__ __forceinline__ bool in_registers() const { return cols <= kRowValues * kNormThreads; }
  __device__ __forceinline__ static int64_t column(int j) { return threadIdx.x + int64_t(j) * kNormThreads; }
};

// With kAdd, first x += y(c) at every column c (y: the sublayer's output, as the caller reads it);
// then out = weight * x / sqrt(mean(x^2) + eps), the row `w.cols` wide. out may alias x. Every load
// of a phase is issued before its first store: x, y and out may alias, so a store ahead of a load
// would make the compiler wait out one memory latency an element (a decode step's norm took 7 us so).
template <bool kAdd, int kRowValues, class Sublayer>
__device__ __forceinline__ void add_rmsnorm_row(float* xr, const Sublayer& y, const NormWeights<kRowValues>& w,
                                                float eps, float* outr) {
  const int64_t cols = w.cols;
  if (!w.in_registers()) {
    float sum = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += kNormThreads) {
      const float v = kAdd ? (xr[c] += y(c)) : xr[c];
      sum += v * v;
    }
    const float inv_rms = 1.0f / sqrtf(block_sum(sum) / float(cols) + eps);
    for (int64_t c = threadIdx.x; c < cols; c += kNormThreads) outr[c] = w.weight[c] * (xr[c] * inv_rms);
    return;
  }
  auto column = [](int j) { return NormWeights<kRowValues>::column(j); };
  float v[kRowValues], added[kRowValues];
#pragma unroll
  for (int j = 0; j < kRowValues; ++j) {
    v[j] = column(j) < cols ? xr[column(j)] : 0.0f;
    if (kAdd) added[j] = column(j) < cols ? y(column(j)) : 0.0f;
  }
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kRowValues; ++j) {
    if (kAdd) {
      v[j] += added[j];
      if (column(j) < cols) xr[column(j)] = v[j];
    }
    sum += v[j] * v[j];
  }
  const float inv_rms = 1.0f / sqrtf(block_sum(sum) / float(cols) + eps);
#pragma unroll
  for (int j = 0; j < kRowValues; ++j)
    if (column(j) < cols) outr[column(j)] = w.w[j] * (v[j] * inv_rms);
}

// The norm weight a launch's last block needs for `then` (rows `cols` wide), read by every block
// before its wait; 8 values a thread cover 2048 columns.
using LastBlockNormWeights = NormWeights<8>;

// `then` on rows [0, rows) of y ([rows, w.cols], rows `stride` apart), by the block that finished its
// launch last: y read through L2, where the other blocks stored it.
__device__ __forceinline__ void last_block_add_rmsnorm(const DeviceResidualNorm& then, const LastBlockNormWeights& w,
                                                       const float* y, int64_t stride, int64_t rows) {
  for (int64_t t = 0; t < rows; ++t) {
    const float* y_row = y + t * stride;
    add_rmsnorm_row<true>(then.residual.data + t * then.residual.stride, [&](int64_t c) { return __ldcg(y_row + c); },
                          w, then.eps, then.normed.data + t * then.normed.stride);
  }
}

}  // namespace dsv3::cuda
