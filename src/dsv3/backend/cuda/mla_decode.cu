// MLA decode in the absorbed form (REFERENCE.md, MLA; FlashMLA's scheme): the query is taken into the
// latent space through W_uk, attention runs as multi-query attention over the cached rows
// (c_kv, k_pe) shared by all heads, and the latent output is taken back through W_uv. The cache is
// read once for a group of 16 heads; long contexts are split over blocks and merged.
#include <cfloat>

#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/row_dots.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kItemsPerBlock = 8;
constexpr int kHeadGroup = 16;  // heads sharing one pass over the cache
constexpr int kTile = 8;        // cache rows a step
constexpr int kThreads = 256;
constexpr int kMaxColsPerThread = 4;  // d_c <= 1024

// grid (n_heads, column blocks of 128, item groups); thread c of the block produces column c of
// q_latent for up to kItemsPerBlock items.
__global__ void absorb_kernel(MlaDims dims, DeviceMatrix q, const MlaItem* items, int n_items, DeviceWeight w,
                              float* q_latent) {
  extern __shared__ float q_nope[];  // [kItemsPerBlock][nope]
  const int h = blockIdx.x, first = blockIdx.z * kItemsPerBlock;
  const int n = min(kItemsPerBlock, n_items - first);
  for (int i = threadIdx.x; i < n * dims.nope; i += blockDim.x) {
    const int item = i / dims.nope, d = i % dims.nope;
    q_nope[i] = q.data[int64_t(items[first + item].q_row) * q.stride + h * dims.qk() + d];
  }
  __syncthreads();
  for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < min(dims.d_c, int(blockIdx.y + 1) * int(blockDim.x));
       c += blockDim.x) {
    float acc[kItemsPerBlock] = {};
    for (int d = 0; d < dims.nope; ++d) {
      const float wv = weight_element(w, int64_t(h) * dims.kv_width() + d, c);
#pragma unroll
      for (int i = 0; i < kItemsPerBlock; ++i) acc[i] += q_nope[i * dims.nope + d] * wv;
    }
    for (int i = 0; i < n; ++i) q_latent[(int64_t(first + i) * dims.n_heads + h) * dims.d_c + c] = acc[i];
  }
}

__device__ inline const float* cache_row(DeviceCacheLayer cache, const int32_t* table, int64_t position) {
  const int64_t page = table[position / cache.page_size];
  return cache.data + (page * cache.page_size + position % cache.page_size) * cache.row_width;
}

// grid (n_items, head groups, n_splits). Writes, per head of the group, the split's running max m,
// sum l and unnormalised latent output o: partial[((item * n_splits + split) * H + h) * (d_c + 2)].
__global__ void __launch_bounds__(kThreads) decode_attention_kernel(MlaDims dims, DeviceMatrix q,
                                                                    const float* q_latent, const MlaItem* items,
                                                                    const int32_t* tables, DeviceCacheLayer cache,
                                                                    float* partial) {
  extern __shared__ float smem[];
  const int width = dims.d_c + dims.rope;  // a cache row
  float* q_s = smem;                       // [kHeadGroup][width]: q_latent then q_pe
  float* kv_s = q_s + kHeadGroup * width;  // [kTile][width]
  float* p_s = kv_s + kTile * width;       // [kHeadGroup][kTile] scores, then probabilities
  float* m_s = p_s + kHeadGroup * kTile;   // [kHeadGroup] running max
  float* l_s = m_s + kHeadGroup;           // [kHeadGroup] running sum
  float* f_s = l_s + kHeadGroup;           // [kHeadGroup] rescale factor of this step

  const MlaItem item = items[blockIdx.x];
  const int h0 = blockIdx.y * kHeadGroup, n_heads = min(kHeadGroup, dims.n_heads - h0);
  const int split = blockIdx.z, n_splits = gridDim.z;
  const int chunk = (item.context_len + n_splits - 1) / n_splits;
  const int begin = min(item.context_len, split * chunk), end = min(item.context_len, begin + chunk);
  const int32_t* table = tables + item.table_offset;

  for (int i = threadIdx.x; i < kHeadGroup * width; i += blockDim.x) {
    const int h = i / width, c = i % width;
    float v = 0.0f;
    if (h < n_heads)
      v = c < dims.d_c ? q_latent[(int64_t(blockIdx.x) * dims.n_heads + h0 + h) * dims.d_c + c]
                       : q.data[int64_t(item.q_row) * q.stride + (h0 + h) * dims.qk() + dims.nope + (c - dims.d_c)];
    q_s[i] = v;
  }
  if (threadIdx.x < kHeadGroup) m_s[threadIdx.x] = -FLT_MAX, l_s[threadIdx.x] = 0.0f;
  float o[kHeadGroup][kMaxColsPerThread] = {};
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int t0 = begin; t0 < end; t0 += kTile) {
    const int n_rows = min(kTile, end - t0);
    __syncthreads();
    for (int i = threadIdx.x; i < n_rows * width; i += blockDim.x)
      kv_s[i] = cache_row(cache, table, t0 + i / width)[i % width];
    __syncthreads();
    // Scores: warp w takes (head, row) pairs w, w + 8, ...
    for (int pair = warp; pair < kHeadGroup * kTile; pair += kThreads / 32) {
      const int h = pair / kTile, t = pair % kTile;
      float s = 0.0f;
      if (h < n_heads && t < n_rows)
        for (int c = lane; c < width; c += 32) s += q_s[h * width + c] * kv_s[t * width + c];
      s = warp_sum(s);
      if (lane == 0) p_s[pair] = (h < n_heads && t < n_rows) ? s * dims.softmax_scale : -FLT_MAX;
    }
    __syncthreads();
    if (threadIdx.x < kHeadGroup) {
      const int h = threadIdx.x;
      float tile_max = -FLT_MAX;
      for (int t = 0; t < n_rows; ++t) tile_max = fmaxf(tile_max, p_s[h * kTile + t]);
      const float m_new = fmaxf(m_s[h], tile_max);
      const float factor = expf(m_s[h] - m_new);
      float sum = 0.0f;
      for (int t = 0; t < kTile; ++t) {
        const float p = t < n_rows ? expf(p_s[h * kTile + t] - m_new) : 0.0f;
        p_s[h * kTile + t] = p;
        sum += p;
      }
      m_s[h] = m_new, l_s[h] = l_s[h] * factor + sum, f_s[h] = factor;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kMaxColsPerThread; ++j) {
      const int c = threadIdx.x + j * kThreads;
      if (c >= dims.d_c) break;
#pragma unroll
      for (int h = 0; h < kHeadGroup; ++h) {
        float acc = o[h][j] * f_s[h];
        for (int t = 0; t < n_rows; ++t) acc += p_s[h * kTile + t] * kv_s[t * width + c];
        o[h][j] = acc;
      }
    }
  }
  __syncthreads();
  for (int h = 0; h < n_heads; ++h) {
    float* out = partial + ((int64_t(blockIdx.x) * n_splits + split) * dims.n_heads + h0 + h) * (dims.d_c + 2);
#pragma unroll
    for (int j = 0; j < kMaxColsPerThread; ++j) {
      const int c = threadIdx.x + j * kThreads;
      if (c < dims.d_c) out[c] = o[h][j];
    }
    if (threadIdx.x == 0) out[dims.d_c] = m_s[h], out[dims.d_c + 1] = l_s[h];
  }
}

// grid (n_items, n_heads): o_latent = sum_s o_s e^(m_s - m) / sum_s l_s e^(m_s - m).
__global__ void merge_kernel(MlaDims dims, int n_splits, const float* partial, float* o_latent) {
  const int item = blockIdx.x, h = blockIdx.y;
  const int64_t row = dims.d_c + 2;
  auto part = [&](int s) { return partial + ((int64_t(item) * n_splits + s) * dims.n_heads + h) * row; };
  float m = -FLT_MAX;
  for (int s = 0; s < n_splits; ++s)
    if (part(s)[dims.d_c + 1] > 0.0f) m = fmaxf(m, part(s)[dims.d_c]);
  float l = 0.0f;
  for (int s = 0; s < n_splits; ++s)
    if (part(s)[dims.d_c + 1] > 0.0f) l += part(s)[dims.d_c + 1] * expf(part(s)[dims.d_c] - m);
  for (int c = threadIdx.x; c < dims.d_c; c += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < n_splits; ++s)
      if (part(s)[dims.d_c + 1] > 0.0f) acc += part(s)[c] * expf(part(s)[dims.d_c] - m);
    o_latent[(int64_t(item) * dims.n_heads + h) * dims.d_c + c] = acc / l;
  }
}

// grid (n_heads, ceil(v_dim / 8)); warp r of the block holds row r of W_uv[h] and applies it to
// every item.
__global__ void unabsorb_kernel(MlaDims dims, const float* o_latent, const MlaItem* items, int n_items,
                                DeviceWeight w, DeviceMatrix out) {
  const int h = blockIdx.x, r = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (r >= dims.v_dim) return;
  const int64_t w_row = int64_t(h) * dims.kv_width() + dims.nope + r;
  constexpr int kMaxPerLane = 32;  // d_c <= 1024
  float wv[kMaxPerLane];
#pragma unroll
  for (int j = 0; j < kMaxPerLane; ++j) {
    const int c = lane + 32 * j;
    wv[j] = c < dims.d_c ? weight_element(w, w_row, c) : 0.0f;
  }
  for (int i = 0; i < n_items; ++i) {
    const float* o = o_latent + (int64_t(i) * dims.n_heads + h) * dims.d_c;
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) {
      const int c = lane + 32 * j;
      if (c < dims.d_c) acc += wv[j] * o[c];
    }
    acc = warp_sum(acc);
    if (lane == 0) out.data[int64_t(items[i].q_row) * out.stride + h * dims.v_dim + r] = acc;
  }
}

}  // namespace

void launch_mla_absorb(MlaDims dims, DeviceMatrix q, const MlaItem* items, int n_items, const DeviceWeight& kv_b_proj,
                       float* q_latent, cudaStream_t stream) {
  const dim3 grid(unsigned(dims.n_heads), unsigned((dims.d_c + 127) / 128),
                  unsigned((n_items + kItemsPerBlock - 1) / kItemsPerBlock));
  const size_t smem = sizeof(float) * kItemsPerBlock * dims.nope;
  absorb_kernel<<<grid, 128, smem, stream>>>(dims, q, items, n_items, kv_b_proj, q_latent);
}

void launch_mla_decode_attention(MlaDims dims, DeviceMatrix q, const float* q_latent, const MlaItem* items,
                                 int n_items, const int32_t* tables, DeviceCacheLayer cache, int n_splits,
                                 float* partial, float* o_latent, cudaStream_t stream) {
  const int width = dims.d_c + dims.rope;
  const size_t smem = sizeof(float) * ((kHeadGroup + kTile) * width + kHeadGroup * kTile + 3 * kHeadGroup);
  cudaFuncSetAttribute(decode_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  const dim3 grid(unsigned(n_items), unsigned((dims.n_heads + kHeadGroup - 1) / kHeadGroup), unsigned(n_splits));
  decode_attention_kernel<<<grid, kThreads, smem, stream>>>(dims, q, q_latent, items, tables, cache, partial);
  merge_kernel<<<dim3(unsigned(n_items), unsigned(dims.n_heads)), 256, 0, stream>>>(dims, n_splits, partial, o_latent);
}

void launch_mla_unabsorb(MlaDims dims, const float* o_latent, const MlaItem* items, int n_items,
                         const DeviceWeight& kv_b_proj, DeviceMatrix out, cudaStream_t stream) {
  const dim3 grid(unsigned(dims.n_heads), unsigned((dims.v_dim + 7) / 8));
  unabsorb_kernel<<<grid, 256, 0, stream>>>(dims, o_latent, items, n_items, kv_b_proj, out);
}

}  // namespace dsv3::cuda
