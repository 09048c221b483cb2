// MLA prefill in the expanded form (REFERENCE.md, MLA), for head widths the one-pass kernel does not
// take (mla_prefill_flash_ok): operands packed head-major for cuBLAS's batched float32 products over
// heads, and the causal softmax between the two products.
#include <cfloat>

#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/mla_expanded_kv.cuh"

namespace dsv3::cuda {
namespace {

__global__ void pack_q_kernel(MlaDims dims, DeviceMatrix q, float* out) {
  const float* row = q.data + blockIdx.x * q.stride;
  float* o = out + int64_t(blockIdx.x) * dims.n_heads * dims.qk();
  for (int i = threadIdx.x; i < dims.n_heads * dims.qk(); i += blockDim.x) o[i] = row[i];
}

// One block a context row: k[h] = (k_nope of head h, the shared rotated k_pe), v[h].
__global__ void pack_kv_kernel(MlaDims dims, DeviceMatrix kv, DeviceMatrix latent, float* k, float* v) {
  const int64_t j = blockIdx.x;
  float* k_row = k + j * dims.n_heads * dims.qk();
  float* v_row = v + j * dims.n_heads * dims.v_dim;
  for (int i = threadIdx.x; i < dims.n_heads * dims.qk(); i += blockDim.x)
    k_row[i] = expanded_key(dims, kv, latent, j, i / dims.qk(), i % dims.qk());
  for (int i = threadIdx.x; i < dims.n_heads * dims.v_dim; i += blockDim.x)
    v_row[i] = expanded_value(dims, kv, j, i / dims.v_dim, i % dims.v_dim);
}

__device__ float block_reduce(float v, bool is_max) {
  __shared__ float partial[32];
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, v, offset);
    v = is_max ? fmaxf(v, other) : v + other;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x / 32) ? partial[lane] : (is_max ? -FLT_MAX : 0.0f);
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, v, offset);
      v = is_max ? fmaxf(v, other) : v + other;
    }
    if (lane == 0) partial[0] = v;
  }
  __syncthreads();
  const float result = partial[0];
  __syncthreads();
  return result;
}

// grid (rows, n_heads).
__global__ void causal_softmax_kernel(const float* scores, int64_t rows, int64_t keys, int64_t first_visible,
                                      float scale, float* probs) {
  const int64_t offset = (int64_t(blockIdx.y) * rows + blockIdx.x) * keys;
  const float* s = scores + offset;
  float* p = probs + offset;
  const int64_t visible = min(keys, first_visible + blockIdx.x + 1);
  float m = -FLT_MAX;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) m = fmaxf(m, s[j] * scale);
  m = block_reduce(m, true);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) sum += expf(s[j] * scale - m);
  const float inv_sum = 1.0f / block_reduce(sum, false);
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x)
    p[j] = j < visible ? expf(s[j] * scale - m) * inv_sum : 0.0f;
}

}  // namespace

void launch_mla_pack_q(MlaDims dims, DeviceMatrix q, float* q_packed, cudaStream_t stream) {
  if (q.rows > 0) pack_q_kernel<<<unsigned(q.rows), 256, 0, stream>>>(dims, q, q_packed);
}

void launch_mla_pack_kv(MlaDims dims, DeviceMatrix kv, DeviceMatrix latent, float* k, float* v, cudaStream_t stream) {
  if (kv.rows > 0) pack_kv_kernel<<<unsigned(kv.rows), 256, 0, stream>>>(dims, kv, latent, k, v);
}

void launch_mla_causal_softmax(const float* scores, int n_heads, int64_t rows, int64_t keys, int64_t first_visible,
                               float scale, float* probs, cudaStream_t stream) {
  if (rows > 0)
    causal_softmax_kernel<<<dim3(unsigned(rows), unsigned(n_heads)), 256, 0, stream>>>(scores, rows, keys,
                                                                                       first_visible, scale, probs);
}

}  // namespace dsv3::cuda
