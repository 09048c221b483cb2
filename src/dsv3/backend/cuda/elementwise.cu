// Row-wise and elementwise kernels of the backend seam; each mirrors the CPU op of the same name.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float value) {
  __shared__ float partial[32];
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < int(blockDim.x / 32) ? partial[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
    if (lane == 0) partial[0] = value;
  }
  __syncthreads();
  const float total = partial[0];
  __syncthreads();
  return total;
}

__global__ void embed_kernel(DeviceWeight table, const int32_t* ids, DeviceMatrix out) {
  const int64_t row = ids[blockIdx.x];
  float* o = out.data + blockIdx.x * out.stride;
  for (int64_t c = threadIdx.x; c < out.cols; c += blockDim.x) o[c] = weight_element(table, row, c);
}

__global__ void gather_rows_kernel(DeviceMatrix x, const int32_t* rows, DeviceMatrix out) {
  const float* src = x.data + int64_t(rows[blockIdx.x]) * x.stride;
  float* dst = out.data + blockIdx.x * out.stride;
  for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) dst[c] = src[c];
}

// out = weight * x / sqrt(mean(x^2) + eps); out may alias x (each thread reads before it writes).
// With kAdd, first x += y (the residual add before a norm, one pass instead of two).
// Rows up to kRowValues * kThreads wide stay in registers, their loads all issued at once; wider
// ones are read twice.
constexpr int kRowValues = 32;

template <bool kAdd>
__global__ void rmsnorm_kernel(DeviceMatrix x, DeviceMatrix y, const float* weight, float eps, DeviceMatrix out) {
  float* xr = x.data + blockIdx.x * x.stride;
  const float* yr = kAdd ? y.data + blockIdx.x * y.stride : nullptr;
  float* outr = out.data + blockIdx.x * out.stride;
  if (x.cols > kRowValues * kThreads) {
    float sum = 0.0f;
    for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) {
      const float v = kAdd ? (xr[c] += yr[c]) : xr[c];
      sum += v * v;
    }
    const float inv_rms = 1.0f / sqrtf(block_sum(sum) / float(x.cols) + eps);
    for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) outr[c] = weight[c] * (xr[c] * inv_rms);
    return;
  }
  float v[kRowValues];
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kRowValues; ++j) {
    const int64_t c = threadIdx.x + int64_t(j) * kThreads;
    v[j] = c < x.cols ? xr[c] : 0.0f;
    if (kAdd && c < x.cols) xr[c] = v[j] += yr[c];
    sum += v[j] * v[j];
  }
  const float inv_rms = 1.0f / sqrtf(block_sum(sum) / float(x.cols) + eps);
#pragma unroll
  for (int j = 0; j < kRowValues; ++j) {
    const int64_t c = threadIdx.x + int64_t(j) * kThreads;
    if (c < x.cols) outr[c] = weight[c] * (v[j] * inv_rms);
  }
}

// Elementwise kernels: grid (rows, column blocks of kThreads), one element a thread.
__global__ void add_kernel(DeviceMatrix x, DeviceMatrix y) {
  const int64_t c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c < x.cols) x.data[blockIdx.x * x.stride + c] += y.data[blockIdx.x * y.stride + c];
}

__global__ void silu_mul_kernel(DeviceMatrix gate, DeviceMatrix up, DeviceMatrix out) {
  const int64_t c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= gate.cols) return;
  const float g = gate.data[blockIdx.x * gate.stride + c];
  out.data[blockIdx.x * out.stride + c] = g / (1.0f + expf(-g)) * up.data[blockIdx.x * up.stride + c];
}

dim3 elementwise_grid(DeviceMatrix m) { return dim3(unsigned(m.rows), unsigned((m.cols + kThreads - 1) / kThreads)); }

// One block a row; pairs (2i, 2i+1) of every head rotated by position * inv_freq[i]. The angle is a
// float32 product, as transformers computes it; cos and sin in double, as the CPU op takes them.
__global__ void rope_kernel(DeviceMatrix x, int64_t head_dim, int64_t offset, const float* inv_freq, int64_t n_pairs,
                            float attention_factor, const int32_t* positions) {
  float* xr = x.data + blockIdx.x * x.stride;
  const int64_t n_heads = x.cols / head_dim;
  const float position = float(positions[blockIdx.x]);
  for (int64_t task = threadIdx.x; task < n_heads * n_pairs; task += blockDim.x) {
    const int64_t h = task / n_pairs, i = task % n_pairs;
    const float angle = position * inv_freq[i];
    const float cos_a = float(cos(double(angle))) * attention_factor;
    const float sin_a = float(sin(double(angle))) * attention_factor;
    float* pair = xr + h * head_dim + offset + 2 * i;
    const float a = pair[0], b = pair[1];
    pair[0] = a * cos_a - b * sin_a;
    pair[1] = b * cos_a + a * sin_a;
  }
}

__device__ float* cache_row(DeviceCacheLayer cache, const int32_t* block_table, int64_t position) {
  const int64_t page = block_table[position / cache.page_size];
  return cache.data + (page * cache.page_size + position % cache.page_size) * cache.row_width;
}

__global__ void cache_write_kernel(DeviceCacheLayer cache, const int32_t* slots, DeviceMatrix rows) {
  float* dst = cache.data + int64_t(slots[blockIdx.x]) * cache.row_width;
  const float* src = rows.data + blockIdx.x * rows.stride;
  for (int64_t c = threadIdx.x; c < cache.row_width; c += blockDim.x) dst[c] = src[c];
}

__global__ void cache_gather_kernel(DeviceCacheLayer cache, const int32_t* block_table, DeviceMatrix out) {
  const float* src = cache_row(cache, block_table, blockIdx.x);
  float* dst = out.data + blockIdx.x * out.stride;
  for (int64_t c = threadIdx.x; c < cache.row_width; c += blockDim.x) dst[c] = src[c];
}

__global__ void read_probe_kernel(const uint4* data, size_t n, float* sink) {
  uint32_t acc = 0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = data[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) sink[blockIdx.x % 1024] = 1.0f;  // keeps the loads; practically never taken
}

__global__ void columns_to_rows_kernel(const void* d, bool d_is_bf16, int64_t ldd, int64_t N, float* y, int64_t ldy) {
  const int64_t m = blockIdx.x;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    const int64_t i = n * ldd + m;
    y[m * ldy + n] = d_is_bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(d)[i]) : static_cast<const float*>(d)[i];
  }
}

}  // namespace

void launch_read_probe(const void* data, size_t n_bytes, float* sink, cudaStream_t stream) {
  read_probe_kernel<<<132 * 16, 512, 0, stream>>>(static_cast<const uint4*>(data), n_bytes / 16, sink);
}

void launch_columns_to_rows(const void* d, bool d_is_bf16, int64_t ldd, int64_t M, int64_t N, float* y, int64_t ldy,
                            cudaStream_t stream) {
  if (M > 0) columns_to_rows_kernel<<<unsigned(M), 256, 0, stream>>>(d, d_is_bf16, ldd, N, y, ldy);
}

void launch_embed(const DeviceWeight& table, const int32_t* ids, DeviceMatrix out, cudaStream_t stream) {
  if (out.rows > 0) embed_kernel<<<unsigned(out.rows), kThreads, 0, stream>>>(table, ids, out);
}

void launch_gather_rows(DeviceMatrix x, const int32_t* rows, DeviceMatrix out, cudaStream_t stream) {
  if (out.rows > 0) gather_rows_kernel<<<unsigned(out.rows), kThreads, 0, stream>>>(x, rows, out);
}

void launch_rmsnorm(DeviceMatrix x, const float* weight, float eps, DeviceMatrix out, cudaStream_t stream) {
  if (x.rows > 0) rmsnorm_kernel<false><<<unsigned(x.rows), kThreads, 0, stream>>>(x, {}, weight, eps, out);
}

void launch_add_rmsnorm(DeviceMatrix x, DeviceMatrix y, const float* weight, float eps, DeviceMatrix out,
                        cudaStream_t stream) {
  if (x.rows > 0) rmsnorm_kernel<true><<<unsigned(x.rows), kThreads, 0, stream>>>(x, y, weight, eps, out);
}

void launch_add(DeviceMatrix x, DeviceMatrix y, cudaStream_t stream) {
  if (x.rows > 0 && x.cols > 0) add_kernel<<<elementwise_grid(x), kThreads, 0, stream>>>(x, y);
}

void launch_silu_mul(DeviceMatrix gate, DeviceMatrix up, DeviceMatrix out, cudaStream_t stream) {
  if (gate.rows > 0 && gate.cols > 0) silu_mul_kernel<<<elementwise_grid(gate), kThreads, 0, stream>>>(gate, up, out);
}

void launch_rope(DeviceMatrix x, int64_t head_dim, int64_t offset, const float* inv_freq, int64_t n_pairs,
                 float attention_factor, const int32_t* positions, cudaStream_t stream) {
  if (x.rows > 0)
    rope_kernel<<<unsigned(x.rows), kThreads, 0, stream>>>(x, head_dim, offset, inv_freq, n_pairs, attention_factor,
                                                           positions);
}

void launch_cache_write(DeviceCacheLayer cache, const int32_t* slots, DeviceMatrix rows, cudaStream_t stream) {
  if (rows.rows > 0) cache_write_kernel<<<unsigned(rows.rows), kThreads, 0, stream>>>(cache, slots, rows);
}

void launch_cache_gather(DeviceCacheLayer cache, const int32_t* block_table, DeviceMatrix out, cudaStream_t stream) {
  if (out.rows > 0) cache_gather_kernel<<<unsigned(out.rows), kThreads, 0, stream>>>(cache, block_table, out);
}

}  // namespace dsv3::cuda
