// MLA decode's absorb and unabsorb for batches of many items, as one product a head over all items:
//   absorb:   Q_latent_h [items x d_c]  = Q_nope_h [items x nope] W_uk_h [nope x d_c]
//   unabsorb: Out_h      [items x v_dim] = O_h [items x d_c] W_uv_h^T      (W_uv_h [v_dim x d_c])
// A block computes a tile of kItems items x kCols columns of one head, kChunk values of k at a time
// through shared memory; the next chunk's loads are in flight in registers while this one is
// multiplied. Float32 throughout, as the CUDA-core kernels of mla_decode.cu. At batch 256 those took
// 78 us (absorb) and 115 us (unabsorb) a layer on an H200 (Moonlight): blocks of 8 items each waiting
// out their loads, and warps applying a weight row to one item after another; these take 42 and 44.
#include "dsv3/backend/cuda/mla_batch_products.h"

#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/mla_kv_b.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kItems = 32, kCols = 64, kChunk = 32, kThreads = 256;
// Loads a thread makes a chunk: 4 values of x (consecutive k of one item), 8 of the weight.
constexpr int kXLoads = kItems * kChunk / kThreads, kWLoads = kCols * kChunk / kThreads;
static_assert(kXLoads == 4 && kWLoads == 8 && kThreads == (kItems / 2) * (kCols / 4));

// The chunk's operands: x transposed (k, item), one float of padding a row so that a thread's four
// stores of consecutive k fall in distinct banks across the warp; the weight as (k, column).
struct Chunk {
  float x[kChunk][kItems + 1];
  alignas(16) float w[kChunk][kCols];
};

// Where this thread loads x: item tid / 8 of the tile, k values 4 (tid % 8) .. + 3 of the chunk.
__device__ inline int x_item() { return threadIdx.x / 8; }
__device__ inline int x_k() { return threadIdx.x % 8 * kXLoads; }

// This thread's x values of the chunk from k0 of its item's row (null past the last item).
__device__ inline void load_x(const float* x_row, int K, int k0, float (&x)[kXLoads]) {
#pragma unroll
  for (int j = 0; j < kXLoads; ++j) x[j] = x_row && k0 + x_k() + j < K ? x_row[k0 + x_k() + j] : 0.0f;
}

__device__ inline void store_x(Chunk& c, const float (&x)[kXLoads]) {
#pragma unroll
  for (int j = 0; j < kXLoads; ++j) c.x[x_k() + j][x_item()] = x[j];
}

// acc[u][v] += sum_k x[k][2 ti + u] w[k][4 tn + v] over the chunk, thread (ti, tn) = (tid / 16,
// tid % 16): the x values are broadcasts (two items a half-warp), the weights one float4.
__device__ inline void multiply_chunk(const Chunk& c, float (&acc)[2][4]) {
  const int ti = threadIdx.x / 16, tn = threadIdx.x % 16;
#pragma unroll 8
  for (int k = 0; k < kChunk; ++k) {
    const float x0 = c.x[k][2 * ti], x1 = c.x[k][2 * ti + 1];
    const float4 w = *reinterpret_cast<const float4*>(&c.w[k][4 * tn]);
    const float wv[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int v = 0; v < 4; ++v) acc[0][v] = fmaf(x0, wv[v], acc[0][v]), acc[1][v] = fmaf(x1, wv[v], acc[1][v]);
  }
}

// The tile's product over k in [0, K): load_w(k0) / store_w(chunk, k0) bring a chunk's weight, x
// comes from x_row (this thread's item). The kernels are launched plainly (launch_plain), so
// wait_for_inputs() only lets the kernel behind start its blocks.
template <class LoadW, class StoreW>
__device__ void tile_product(int K, Chunk& c, const LoadW& load_w, const StoreW& store_w, const float* x_row,
                             float (&acc)[2][4]) {
  float x[kXLoads];
  load_w(0);
  wait_for_inputs();
  load_x(x_row, K, 0, x);
  for (int k0 = 0; k0 < K; k0 += kChunk) {
    store_w(c, k0);
    store_x(c, x);
    __syncthreads();
    if (k0 + kChunk < K) load_w(k0 + kChunk), load_x(x_row, K, k0 + kChunk, x);
    multiply_chunk(c, acc);
    __syncthreads();
  }
}

// Item i's sums to row_of(i) at columns n0 + 4 tn .. (thread (ti, tn) keeps items i0 + 2 ti + u).
template <class RowOf>
__device__ void store_tile(const float (&acc)[2][4], int i0, int n0, int N, int n_items, const RowOf& row_of) {
  const int ti = threadIdx.x / 16, tn = threadIdx.x % 16;
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int i = i0 + 2 * ti + u;
    if (i >= n_items) continue;
    float* row = row_of(i);
#pragma unroll
    for (int v = 0; v < 4; ++v)
      if (n0 + 4 * tn + v < N) row[n0 + 4 * tn + v] = acc[u][v];
  }
}

// grid (column tiles of d_c, item tiles, heads). The weight W_uk_h[k][n] is kv_b_proj's row
// h * kv_width + k, column n: a thread reads 8 consecutive columns of row k (one FP8 scale block).
template <DType D>
__global__ void __launch_bounds__(kThreads) absorb_tiled_kernel(MlaDims dims, DeviceMatrix q, const MlaItem* items,
                                                                int n_items, DeviceWeight w, float* q_latent) {
  __shared__ Chunk chunk;
  const int h = blockIdx.z, i0 = blockIdx.y * kItems, n0 = blockIdx.x * kCols, K = dims.nope, N = dims.d_c;
  const int64_t w_row0 = int64_t(h) * dims.kv_width();
  const int w_k = threadIdx.x / 8, w_n = n0 + threadIdx.x % 8 * kWLoads;
  uint32_t bits[kWLoads];
  float scale = 1.0f;
  auto load_w = [&](int k0) {
    const int64_t row = w_row0 + min(k0 + w_k, K - 1);  // clamped: the loads stay in the weight
#pragma unroll
    for (int j = 0; j < kWLoads; ++j) bits[j] = kv_b_bits<D>(w, row, min(w_n + j, N - 1));
    scale = kv_b_scale<D>(w, row, min(w_n, N - 1));
  };
  auto store_w = [&](Chunk& c, int k0) {
#pragma unroll
    for (int j = 0; j < kWLoads; ++j)
      c.w[w_k][w_n - n0 + j] = k0 + w_k < K && w_n + j < N ? kv_b_value<D>(bits[j], scale) : 0.0f;
  };
  const int x_i = i0 + x_item();
  const float* x_row = x_i < n_items ? q.data + int64_t(items[x_i].q_row) * q.stride + h * dims.qk() : nullptr;
  float acc[2][4] = {};
  tile_product(K, chunk, load_w, store_w, x_row, acc);
  store_tile(acc, i0, n0, N, n_items, [&](int i) { return q_latent + (int64_t(i) * dims.n_heads + h) * N; });
}

// grid (column tiles of v_dim, item tiles, heads). The weight W_uv_h^T[k][n] is kv_b_proj's row
// h * kv_width + nope + n, column k: a thread reads 8 consecutive columns of row n (one FP8 scale
// block).
template <DType D>
__global__ void __launch_bounds__(kThreads) unabsorb_tiled_kernel(MlaDims dims, const float* o_latent,
                                                                  const MlaItem* items, int n_items, DeviceWeight w,
                                                                  DeviceMatrix out) {
  __shared__ Chunk chunk;
  const int h = blockIdx.z, i0 = blockIdx.y * kItems, n0 = blockIdx.x * kCols, K = dims.d_c, N = dims.v_dim;
  const int w_n = threadIdx.x / 4, w_k = threadIdx.x % 4 * kWLoads;
  const int64_t row = int64_t(h) * dims.kv_width() + dims.nope + min(n0 + w_n, N - 1);
  uint32_t bits[kWLoads];
  float scale = 1.0f;
  auto load_w = [&](int k0) {
#pragma unroll
    for (int j = 0; j < kWLoads; ++j) bits[j] = kv_b_bits<D>(w, row, min(k0 + w_k + j, K - 1));
    scale = kv_b_scale<D>(w, row, min(k0 + w_k, K - 1));
  };
  auto store_w = [&](Chunk& c, int k0) {
#pragma unroll
    for (int j = 0; j < kWLoads; ++j)
      c.w[w_k + j][w_n] = k0 + w_k + j < K && n0 + w_n < N ? kv_b_value<D>(bits[j], scale) : 0.0f;
  };
  const int x_i = i0 + x_item();
  const float* x_row = x_i < n_items ? o_latent + (int64_t(x_i) * dims.n_heads + h) * K : nullptr;
  float acc[2][4] = {};
  tile_product(K, chunk, load_w, store_w, x_row, acc);
  store_tile(acc, i0, n0, N, n_items, [&](int i) { return out.data + int64_t(items[i].q_row) * out.stride + h * N; });
}

// kernel<<<the tiles of n_cols columns, n_items items and n_heads heads>>>(args...), launched plainly,
// not chained: a chained launch starts its blocks as soon as the kernel ahead lets it, and at batch 256
// (the unabsorb 256 blocks of 12 KB, behind MLA attention's one block an SM) the SMs that attention
// had left idle took up to 8 blocks each, all resident at once, while the others took 2: the product
// ran 99 us a layer where its arithmetic takes some 15 (H200, Moonlight).
template <typename Kernel, typename... Args>
void launch_plain(Kernel kernel, int n_cols, int n_items, int n_heads, cudaStream_t stream, Args... args) {
  const dim3 grid(unsigned((n_cols + kCols - 1) / kCols), unsigned((n_items + kItems - 1) / kItems), unsigned(n_heads));
  kernel<<<grid, kThreads, 0, stream>>>(args...);
}

}  // namespace

void launch_mla_absorb_tiled(MlaDims dims, DeviceMatrix q, const MlaItem* items, int n_items,
                             const DeviceWeight& kv_b_proj, float* q_latent, cudaStream_t stream) {
  const auto kernel = by_kv_b_dtype(kv_b_proj, absorb_tiled_kernel<DType::F32>, absorb_tiled_kernel<DType::BF16>,
                                    absorb_tiled_kernel<DType::F8_E4M3>);
  launch_plain(kernel, dims.d_c, n_items, dims.n_heads, stream, dims, q, items, n_items, kv_b_proj, q_latent);
}

void launch_mla_unabsorb_tiled(MlaDims dims, const float* o_latent, const MlaItem* items, int n_items,
                               const DeviceWeight& kv_b_proj, DeviceMatrix out, cudaStream_t stream) {
  const auto kernel = by_kv_b_dtype(kv_b_proj, unabsorb_tiled_kernel<DType::F32>,
                                    unabsorb_tiled_kernel<DType::BF16>, unabsorb_tiled_kernel<DType::F8_E4M3>);
  launch_plain(kernel, dims.v_dim, n_items, dims.n_heads, stream, dims, o_latent, items, n_items, kv_b_proj, out);
}

}  // namespace dsv3::cuda
