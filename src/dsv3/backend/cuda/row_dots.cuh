// The inner loop of every weight-streaming kernel: y = x W^T for a decode-sized batch (1..16 rows
// of x), where the work is reading W once from memory.
//
// A warp is kRowLanes groups of kKLanes lanes. A group owns kRows weight rows and splits their
// columns: lane j of the group reads the 16-byte vectors j, j + kKLanes, ... of each row (128
// contiguous bytes a row per warp load). Each lane loads kUnroll vectors of each of its rows before
// using any (kRows * kUnroll independent loads in flight), widens them to float32 and multiplies
// them into the kTokens input rows: a load of x (one address for all groups of the warp, so one L1
// wavefront) serves kRows rows, and a weight load serves kTokens tokens. The group's partial sums
// meet in log2(kKLanes) shuffle steps; where rows are too few to fill the GPU, a group's rows are
// also split over wpr warps of a block (interleaved column chunks), whose sums meet in shared memory.
//
// Measured before and after this scheme: bench/RESULTS.md (CUDA section). For one token what is
// left is latency, not issue: Nsight Compute on Moonlight's FP8 decode gate_up (H200) found 31% of
// the issue slots used and DRAM at 35% of its peak; with 8 tokens the FMAs themselves dominate
// (prefill MoE). FP8 experts take moe_mma.cu's tensor-core kernels instead.
#pragma once

#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::cuda {

constexpr int kRowWarps = 8;             // warps of a weight-streaming block
constexpr int kKLanes = 8;               // lanes that share weight rows, splitting their columns
constexpr int kRowLanes = 32 / kKLanes;  // lane groups of a warp, each with its own rows
constexpr int64_t kBusyWarps = 4096;     // warps that keep an H100's 132 SMs issuing

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Where a lane group's kRows weight rows live; all have the shape of one DeviceWeight (dtype,
// columns, FP8 blocks) but may belong to different matrices (an expert's gate and up).
template <int kRows>
struct LaneRows {
  const void* data[kRows];        // the row's matrix
  const float* scale_inv[kRows];  // its FP8 block scales
  int64_t row[kRows];
};

// sums[r][t] += (row r's 16 bytes of vector v, widened) . x_rows[t][the vector's columns]; where
// scale is given, each row's elements are multiplied by scale[r] first.
template <DType D, int kRows, int kTokens>
__device__ __forceinline__ void vector_dots(const uint4 (&raw)[kRows], const float* const (&x_rows)[kTokens], int v,
                                            int n_tokens, const float* scale, float (&sums)[kRows][kTokens]) {
  using Vec = WeightVector<D>;
#pragma unroll
  for (int g = 0; g < Vec::kElems / 4; ++g) {
    float wf[kRows][4];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      Vec::widen(raw[r], g, wf[r]);
      if (scale)
#pragma unroll
        for (int i = 0; i < 4; ++i) wf[r][i] *= scale[r];
    }
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      if (t >= n_tokens) break;
      const float4 xv = __ldg(reinterpret_cast<const float4*>(x_rows[t] + int64_t(v) * Vec::kElems) + g);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        float a = sums[r][t];
        a = fmaf(wf[r][0], xv.x, a);
        a = fmaf(wf[r][1], xv.y, a);
        a = fmaf(wf[r][2], xv.z, a);
        sums[r][t] = fmaf(wf[r][3], xv.w, a);
      }
    }
  }
}

// acc[r][t] += W_r . x_rows[t] over this lane's vectors of this warp's column chunks (part of wpr).
// inputs_ready() is called once, after the first chunk's weights are asked for: a chained kernel
// waits for its inputs there (chained_launch.cuh), its weights already on their way.
template <DType D, int kUnroll, int kRows, int kTokens, class InputsReady>
__device__ __forceinline__ void rows_dot_vector(const DeviceWeight& shape, const LaneRows<kRows>& rows, int part,
                                                int wpr, const float* const (&x_rows)[kTokens], int n_tokens,
                                                float (&acc)[kRows][kTokens], const InputsReady& inputs_ready) {
  constexpr int kElems = WeightVector<D>::kElems, kChunk = kKLanes * kUnroll;  // a chunk's vectors of a row
  constexpr bool kScaled = D == DType::F8_E4M3;
  // FP8: a vector lies in one scale block, so its sums can take the scale (one multiply a sum, not
  // one an element) while they are few; with many tokens their registers cost more.
  constexpr bool kScaleSums = kScaled && kTokens <= 4;
  const int n_vectors = int(shape.cols / kElems);
  const unsigned block_in = unsigned(shape.block_in);
  const uint8_t* row_bytes[kRows];
  const float* row_scales[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    row_bytes[r] = static_cast<const uint8_t*>(rows.data[r]) + rows.row[r] * shape.cols * (16 / kElems);
    if constexpr (kScaled)
      row_scales[r] = rows.scale_inv[r] + rows.row[r] / shape.block_out * ((shape.cols + block_in - 1) / block_in);
  }
  uint4 raw[kUnroll][kRows];
  float scale[kUnroll][kRows];
  // Every load of a chunk first, then the arithmetic.
  auto load_chunk = [&](int v0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int v = v0 + u * kKLanes;
      if (v < n_vectors)
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          raw[u][r] = load_weight_vector(row_bytes[r] + int64_t(v) * 16);
          if constexpr (kScaled) scale[u][r] = __ldg(row_scales[r] + unsigned(v * kElems) / block_in);
        }
    }
  };
  const int first = part * kChunk + threadIdx.x % kKLanes;
  load_chunk(first);
  inputs_ready();
#pragma unroll 1
  for (int v0 = first; v0 < n_vectors; v0 += wpr * kChunk) {
    if (v0 != first) load_chunk(v0);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int v = v0 + u * kKLanes;
      if (v >= n_vectors) break;
      if constexpr (kScaleSums) {
        float sums[kRows][kTokens] = {};
        vector_dots<D>(raw[u], x_rows, v, n_tokens, nullptr, sums);
#pragma unroll
        for (int r = 0; r < kRows; ++r)
#pragma unroll
          for (int t = 0; t < kTokens; ++t) acc[r][t] = fmaf(scale[u][r], sums[r][t], acc[r][t]);
      } else {
        vector_dots<D>(raw[u], x_rows, v, n_tokens, kScaled ? scale[u] : nullptr, acc);
      }
    }
  }
}

// The same element by element, where shapes or alignment forbid 16-byte vectors.
template <int kRows, int kTokens>
__device__ __forceinline__ void rows_dot_scalar(const DeviceWeight& shape, const LaneRows<kRows>& rows, int part,
                                                int wpr, const float* const (&x_rows)[kTokens], int n_tokens,
                                                float (&acc)[kRows][kTokens]) {
  DeviceWeight w[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) w[r] = shape, w[r].data = rows.data[r], w[r].scale_inv = rows.scale_inv[r];
  for (int64_t k = int64_t(part) * kKLanes + threadIdx.x % kKLanes; k < shape.cols; k += int64_t(wpr) * kKLanes)
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float wk = weight_element(w[r], rows.row[r], k);
#pragma unroll
      for (int t = 0; t < kTokens; ++t)
        if (t < n_tokens) acc[r][t] += wk * x_rows[t][k];
    }
}

// kVector: the 16-byte path's conditions hold (vector_rows_ok); D is the stored dtype there and
// unused on the scalar path, which calls inputs_ready() before anything else.
template <DType D, bool kVector, int kUnroll, int kRows, int kTokens, class InputsReady>
__device__ __forceinline__ void rows_dot(const DeviceWeight& shape, const LaneRows<kRows>& rows, int part, int wpr,
                                         const float* const (&x_rows)[kTokens], int n_tokens,
                                         float (&acc)[kRows][kTokens], const InputsReady& inputs_ready) {
  if constexpr (kVector) {
    rows_dot_vector<D, kUnroll>(shape, rows, part, wpr, x_rows, n_tokens, acc, inputs_ready);
  } else {
    inputs_ready();
    rows_dot_scalar(shape, rows, part, wpr, x_rows, n_tokens, acc);
  }
}

// For kernels that have waited for their inputs before their rows' products.
struct InputsWaited {
  __device__ void operator()() const {}
};

// Sums acc over the lanes of each group (all of them get the totals), then over the wpr warps of
// the rows (consecutive warps of the block) in shared memory. Every thread of the block must call
// it; it returns true in the warps that hold the totals (part 0).
template <int kRows, int kTokens>
__device__ __forceinline__ bool reduce_rows(float (&acc)[kRows][kTokens], int part, int wpr) {
#pragma unroll
  for (int offset = kKLanes / 2; offset > 0; offset /= 2)
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int t = 0; t < kTokens; ++t) acc[r][t] += __shfl_xor_sync(0xffffffffu, acc[r][t], offset);
  if (wpr == 1) return true;
  __shared__ float partial[kRowWarps][kRows * kTokens][kRowLanes];
  const int warp = threadIdx.x / 32, group = threadIdx.x % 32 / kKLanes;
  if (threadIdx.x % kKLanes == 0)
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int t = 0; t < kTokens; ++t) partial[warp][r * kTokens + t][group] = acc[r][t];
  __syncthreads();
  if (part == 0)
    for (int p = 1; p < wpr; ++p)
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int t = 0; t < kTokens; ++t) acc[r][t] += partial[warp + p][r * kTokens + t][group];
  __syncthreads();  // partial is free for the next call
  return part == 0;
}

// Whether this lane stores total (r, t) of its group: the group's lanes take turns.
template <int kTokens>
__device__ inline bool stores_total(int r, int t) {
  return (r * kTokens + t) % kKLanes == int(threadIdx.x % kKLanes);
}

// Host side: warps sharing each lane group's rows, so that few rows (`tiles` warps' worth, times the
// matrices a launch streams) still give every SM enough warps: a lane spends far longer widening and
// multiplying its vectors than waiting for them, so short work a warp beats long (measured: 8 vectors
// of a row a lane in flight at once, fewer warps, made the decode kernels 20% slower than 4). Each
// warp keeps at least one chunk (of `chunk_vectors` vectors a lane group) of its rows' `vectors`.
inline int warps_per_tile(int64_t tiles, int64_t vectors, int64_t chunk_vectors) {
  const int64_t chunks = (vectors + chunk_vectors - 1) / chunk_vectors;
  int wpr = 1;
  while (wpr < kRowWarps && tiles * wpr < kBusyWarps && chunks >= 2 * wpr) wpr *= 2;
  return wpr;
}

// Host side: Kernels::get<D, kVector>(), a kernel for a weight's stored dtype and read path
// (vector_rows_ok); the scalar path reads every dtype, so it has one instantiation (D = F32).
template <class Kernels>
auto kernel_for(DType dtype, bool vector) {
  if (!vector) return Kernels::template get<DType::F32, false>();
  switch (dtype) {
    case DType::F32: break;
    case DType::BF16: return Kernels::template get<DType::BF16, true>();
    case DType::F16: return Kernels::template get<DType::F16, true>();
    case DType::F8_E4M3: return Kernels::template get<DType::F8_E4M3, true>();
  }
  return Kernels::template get<DType::F32, true>();
}

// Host side: 16-byte vectors of a weight row (elements on the scalar path count in vectors too).
inline int64_t row_vectors(const DeviceWeight& w) { return w.cols * int64_t(dtype_bytes(w.dtype)) / 16; }

}  // namespace dsv3::cuda
