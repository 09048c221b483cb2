// Row-wise and elementwise kernels of the backend seam; each mirrors the CPU op of the same name.
#include <cuda_fp16.h>

#include "dsv3/backend/cuda/block_reduce.cuh"
#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/mla_decode_rows.cuh"
#include "dsv3/backend/cuda/residual_norm.cuh"
#include "dsv3/backend/cuda/silu.cuh"
#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void embed_kernel(DeviceWeight table, const int32_t* ids, DeviceMatrix fed, DeviceMatrix out) {
  wait_for_inputs();
  const int32_t id = ids[blockIdx.x];
  const int64_t row = id >= 0 ? id : int64_t(fed.data[int64_t(-1 - id) * fed.stride]);
  float* o = out.data + blockIdx.x * out.stride;
  for (int64_t c = threadIdx.x; c < out.cols; c += blockDim.x) o[c] = weight_element(table, row, c);
}

__global__ void gather_rows_kernel(DeviceMatrix x, const int32_t* rows, DeviceMatrix out) {
  wait_for_inputs();
  const float* src = x.data + int64_t(rows[blockIdx.x]) * x.stride;
  float* dst = out.data + blockIdx.x * out.stride;
  for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) dst[c] = src[c];
}

// out = weight * x / sqrt(mean(x^2) + eps), one block a row; with kAdd, first x += y (the residual
// add before a norm, one pass instead of two). The norm weight, a stored weight (chained_launch.cuh),
// is read while the kernel ahead finishes. A thread keeps kRowValues of the row in registers: 32
// (rows up to 8192 wide) takes 106-128 registers a thread, two blocks an SM, too few loads in flight
// for the bandwidth; 8 (up to 2048) takes under 40, six blocks an SM.
template <bool kAdd, int kRowValues>
__global__ void rmsnorm_kernel(DeviceMatrix x, DeviceMatrix y, const float* weight, float eps, DeviceMatrix out) {
  static_assert(kThreads == kNormThreads);
  const float* yr = kAdd ? y.data + blockIdx.x * y.stride : nullptr;
  const NormWeights<kRowValues> w(weight, x.cols);
  wait_for_inputs();
  add_rmsnorm_row<kAdd>(x.data + blockIdx.x * x.stride, [&](int64_t c) { return yr[c]; }, w, eps,
                        out.data + blockIdx.x * out.stride);
}

// Elementwise kernels: grid (rows, column blocks of kThreads), one element a thread.
__global__ void add_kernel(DeviceMatrix x, DeviceMatrix y) {
  wait_for_inputs();
  const int64_t c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c < x.cols) x.data[blockIdx.x * x.stride + c] += y.data[blockIdx.x * y.stride + c];
}

__global__ void silu_mul_kernel(DeviceMatrix gate, DeviceMatrix up, DeviceMatrix out) {
  wait_for_inputs();
  const int64_t c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= gate.cols) return;
  const float g = gate.data[blockIdx.x * gate.stride + c];
  out.data[blockIdx.x * out.stride + c] = silu(g) * up.data[blockIdx.x * up.stride + c];
}

dim3 elementwise_grid(DeviceMatrix m) { return dim3(unsigned(m.rows), unsigned((m.cols + kThreads - 1) / kThreads)); }

// The rotation of pair i at `position`, (cos, sin) of position * inv_freq_i times attention_factor:
// the angle a float32 product, as transformers computes it; cos and sin in double, as the CPU op
// takes them.
__device__ inline float2 rotation(float position, float inv_freq, float attention_factor) {
  const double angle = double(position * inv_freq);
  return {float(cos(angle)) * attention_factor, float(sin(angle)) * attention_factor};
}

// The pair (a, b) rotated by r (rotation()).
__device__ inline float2 rotated(float a, float b, float2 r) { return {a * r.x - b * r.y, b * r.x + a * r.y}; }

// Rotates the pair (2i, 2i+1) at `pair` by r in place.
__device__ inline void rotate(float* pair, float2 r) {
  const float2 v = rotated(pair[0], pair[1], r);
  pair[0] = v.x, pair[1] = v.y;
}

__device__ inline void rotate_pair(float* pair, float position, float inv_freq, float attention_factor) {
  rotate(pair, rotation(position, inv_freq, attention_factor));
}

// One block a row; pairs (2i, 2i+1) of every head rotated by position * inv_freq[i].
__global__ void rope_kernel(DeviceMatrix x, int64_t head_dim, int64_t offset, const float* inv_freq, int64_t n_pairs,
                            float attention_factor, const int32_t* positions) {
  wait_for_inputs();
  float* xr = x.data + blockIdx.x * x.stride;
  const int64_t n_heads = x.cols / head_dim;
  const float position = float(positions[blockIdx.x]);
  for (int64_t task = threadIdx.x; task < n_heads * n_pairs; task += blockDim.x) {
    const int64_t h = task / n_pairs, i = task % n_pairs;
    rotate_pair(xr + h * head_dim + offset + 2 * i, position, inv_freq[i], attention_factor);
  }
}

// One block a token: Backend::mla_rope_and_cache, the norm, both rotations and the cache store that
// are four launches apart in one.
__global__ void mla_rope_and_cache_kernel(MlaDims dims, DeviceMatrix q, DeviceMatrix kv, const float* kv_norm, float eps,
                                          const float* inv_freq, float attention_factor, const int32_t* positions,
                                          DeviceCacheLayer cache, const int32_t* slots) {
  constexpr int kLatentValues = kMaxDecodeLatent / kThreads;
  const int n_pairs = dims.rope / 2;
  // The norm's weights and the frequencies are stored weights: read before the wait (chained_launch.cuh).
  float w[kLatentValues];
#pragma unroll
  for (int j = 0; j < kLatentValues; ++j) {
    const int c = threadIdx.x + j * kThreads;
    w[j] = c < dims.d_c ? kv_norm[c] : 0.0f;
  }
  const float own_freq = int(threadIdx.x) < n_pairs ? inv_freq[threadIdx.x] : 0.0f;
  wait_for_inputs();
  float* kv_row = kv.data + blockIdx.x * kv.stride;
  float* q_row = q.data + blockIdx.x * q.stride;
  CacheValue* cached = cache.data + int64_t(slots[blockIdx.x]) * cache.row_width;
  const float position = float(positions[blockIdx.x]);
  // Each pair's rotation, worked out once for k_pe and every head (block_sum's barrier publishes them).
  static_assert(kMaxRopePairs <= kThreads);
  __shared__ float2 rotations[kMaxRopePairs];
  if (int(threadIdx.x) < n_pairs) rotations[threadIdx.x] = rotation(position, own_freq, attention_factor);
  // c_kv in registers, all its loads before any store (kv, q and the cache may alias, as in rmsnorm).
  float v[kLatentValues];
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kLatentValues; ++j) {
    const int c = threadIdx.x + j * kThreads;
    v[j] = c < dims.d_c ? kv_row[c] : 0.0f;
    sum += v[j] * v[j];
  }
  for (int c = threadIdx.x + kLatentValues * kThreads; c < dims.d_c; c += blockDim.x) sum += kv_row[c] * kv_row[c];
  const float inv_rms = 1.0f / sqrtf(block_sum(sum) / float(dims.d_c) + eps);
#pragma unroll
  for (int j = 0; j < kLatentValues; ++j) {
    const int c = threadIdx.x + j * kThreads;
    if (c < dims.d_c) cached[c] = __float2bfloat16_rn(kv_row[c] = w[j] * (v[j] * inv_rms));
  }
  for (int c = threadIdx.x + kLatentValues * kThreads; c < dims.d_c; c += blockDim.x)
    cached[c] = __float2bfloat16_rn(kv_row[c] = kv_norm[c] * (kv_row[c] * inv_rms));
  for (int i = threadIdx.x; i < n_pairs; i += blockDim.x) {
    float* pair = kv_row + dims.d_c + 2 * i;
    rotate(pair, rotations[i]);
    cached[dims.d_c + 2 * i] = __float2bfloat16_rn(pair[0]), cached[dims.d_c + 2 * i + 1] = __float2bfloat16_rn(pair[1]);
  }
  // The heads' q_pe, kBatch pairs a thread loaded before any is stored (a pair at a time waited out a
  // memory latency each).
  constexpr int kBatch = 4;
  const int n_tasks = dims.n_heads * n_pairs;
  auto q_pair = [&](int task) { return q_row + task / n_pairs * dims.qk() + dims.nope + 2 * (task % n_pairs); };
  for (int t0 = threadIdx.x; t0 < n_tasks; t0 += kBatch * blockDim.x) {
    float a[kBatch], b[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int task = t0 + u * int(blockDim.x);
      if (task < n_tasks) a[u] = q_pair(task)[0], b[u] = q_pair(task)[1];
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int task = t0 + u * int(blockDim.x);
      if (task >= n_tasks) continue;
      const float2 v = rotated(a[u], b[u], rotations[task % n_pairs]);
      float* pair = q_pair(task);
      pair[0] = v.x, pair[1] = v.y;
    }
  }
}

// Rows are rounded to BF16 (to nearest even) as they are cached.
__global__ void cache_write_kernel(DeviceCacheLayer cache, const int32_t* slots, DeviceMatrix rows) {
  wait_for_inputs();
  CacheValue* dst = cache.data + int64_t(slots[blockIdx.x]) * cache.row_width;
  const float* src = rows.data + blockIdx.x * rows.stride;
  for (int64_t c = threadIdx.x; c < cache.row_width; c += blockDim.x) dst[c] = __float2bfloat16_rn(src[c]);
}

__global__ void cache_gather_kernel(DeviceCacheLayer cache, const int32_t* block_table, DeviceMatrix out) {
  wait_for_inputs();
  const CacheValue* src = cache_row(cache, block_table, int(blockIdx.x));
  float* dst = out.data + blockIdx.x * out.stride;
  for (int64_t c = threadIdx.x; c < cache.row_width; c += blockDim.x) dst[c] = __bfloat162float(src[c]);
}

__global__ void read_probe_kernel(const uint4* data, size_t n, float* sink) {
  uint32_t acc = 0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = data[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) sink[blockIdx.x % 1024] = 1.0f;  // keeps the loads; practically never taken
}

// rmsnorm_kernel with the fewest registers that hold x's row.
template <bool kAdd>
void launch_rmsnorm_rows(DeviceMatrix x, DeviceMatrix y, const float* weight, float eps, DeviceMatrix out,
                         cudaStream_t stream) {
  if (x.rows == 0) return;
  const auto kernel = x.cols <= 8 * kNormThreads ? rmsnorm_kernel<kAdd, 8> : rmsnorm_kernel<kAdd, 32>;
  launch_chained(kernel, unsigned(x.rows), kThreads, 0, stream, x, y, weight, eps, out);
}

}  // namespace

void launch_read_probe(const void* data, size_t n_bytes, float* sink, cudaStream_t stream) {
  read_probe_kernel<<<132 * 16, 512, 0, stream>>>(static_cast<const uint4*>(data), n_bytes / 16, sink);
}

void launch_embed(const DeviceWeight& table, const int32_t* ids, DeviceMatrix fed, DeviceMatrix out, cudaStream_t stream) {
  if (out.rows > 0) launch_chained(embed_kernel, unsigned(out.rows), kThreads, 0, stream, table, ids, fed, out);
}

void launch_gather_rows(DeviceMatrix x, const int32_t* rows, DeviceMatrix out, cudaStream_t stream) {
  if (out.rows > 0) launch_chained(gather_rows_kernel, unsigned(out.rows), kThreads, 0, stream, x, rows, out);
}

void launch_rmsnorm(DeviceMatrix x, const float* weight, float eps, DeviceMatrix out, cudaStream_t stream) {
  launch_rmsnorm_rows<false>(x, DeviceMatrix{}, weight, eps, out, stream);
}

void launch_add_rmsnorm(DeviceMatrix x, DeviceMatrix y, const float* weight, float eps, DeviceMatrix out,
                        cudaStream_t stream) {
  launch_rmsnorm_rows<true>(x, y, weight, eps, out, stream);
}

void launch_add(DeviceMatrix x, DeviceMatrix y, cudaStream_t stream) {
  if (x.rows > 0 && x.cols > 0) launch_chained(add_kernel, elementwise_grid(x), kThreads, 0, stream, x, y);
}

void launch_silu_mul(DeviceMatrix gate, DeviceMatrix up, DeviceMatrix out, cudaStream_t stream) {
  if (gate.rows > 0 && gate.cols > 0) launch_chained(silu_mul_kernel, elementwise_grid(gate), kThreads, 0, stream, gate, up, out);
}

void launch_rope(DeviceMatrix x, int64_t head_dim, int64_t offset, const float* inv_freq, int64_t n_pairs,
                 float attention_factor, const int32_t* positions, cudaStream_t stream) {
  if (x.rows > 0)
    launch_chained(rope_kernel, unsigned(x.rows), kThreads, 0, stream, x, head_dim, offset, inv_freq, n_pairs,
                   attention_factor, positions);
}

void launch_mla_rope_and_cache(MlaDims dims, DeviceMatrix q, DeviceMatrix kv, const float* kv_norm, float eps,
                               const float* inv_freq, float attention_factor, const int32_t* positions,
                               DeviceCacheLayer cache, const int32_t* slots, cudaStream_t stream) {
  if (kv.rows > 0)
    launch_chained(mla_rope_and_cache_kernel, unsigned(kv.rows), kThreads, 0, stream, dims, q, kv, kv_norm, eps, inv_freq,
                   attention_factor, positions, cache, slots);
}

void launch_cache_write(DeviceCacheLayer cache, const int32_t* slots, DeviceMatrix rows, cudaStream_t stream) {
  if (rows.rows > 0) launch_chained(cache_write_kernel, unsigned(rows.rows), kThreads, 0, stream, cache, slots, rows);
}

void launch_cache_gather(DeviceCacheLayer cache, const int32_t* block_table, DeviceMatrix out, cudaStream_t stream) {
  if (out.rows > 0) launch_chained(cache_gather_kernel, unsigned(out.rows), kThreads, 0, stream, cache, block_table, out);
}

}  // namespace dsv3::cuda
