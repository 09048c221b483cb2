// MLA decode in the absorbed form (REFERENCE.md, MLA; FlashMLA's scheme): the query is taken into the
// latent space through W_uk, attention runs as multi-query attention over the cached rows
// (c_kv, k_pe) shared by all heads, and the latent output is taken back through W_uv. The cache is
// read once for a group of heads (through L2 for the other groups); contexts are split over blocks and merged.
// Batches of many items take the absorb and unabsorb of mla_batch_products.cu.
#include <algorithm>
#include <cfloat>

#include "dsv3/backend/cuda/block_reduce.cuh"
#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/mla_batch_products.h"
#include "dsv3/backend/cuda/mla_decode_mma.h"
#include "dsv3/backend/cuda/mla_decode_rows.cuh"
#include "dsv3/backend/cuda/mla_kv_b.cuh"
#include "dsv3/backend/cuda/row_dots.cuh"
#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kItemsPerBlock = 8;
// Heads sharing one pass over the cache. Eight, not sixteen: a block's work is issue-bound (shared-
// memory operands for CUDA-core products), so a one-token step's few tiles are better spread over
// more blocks, whose head groups of the same split run side by side and share the tile through L2
// (bench, Moonlight FP8 on an H200: batch-1 decode 250 tok/s with groups of 4, 260 with 16, 265 with 8).
constexpr int kHeadGroup = 8;
// Cache rows a step. Sixteen, not 32: a one-token step's context of 1K rows is then 2 x 68 blocks
// of one tile each, where 2 x 34 blocks of 32 rows left half the SMs idle.
constexpr int kTile = 16;
// Four warps; two blocks an SM (q and two tiles of the widest rows, 640 values: 61 KiB a block).
constexpr int kThreads = kHeadGroup * kTile, kBlocksPerSm = 2;
constexpr int kMaxColsPerThread = (kMaxDecodeLatent + kThreads - 1) / kThreads;
constexpr int kLanesPerHead = kTile;  // the softmax phase: a lane a row
// The score phase's quads of 16 threads each take 4 heads x 4 rows; the softmax phase's warps each
// take 32 / kTile heads.
static_assert(kThreads == kHeadGroup * kTile && 32 % kTile == 0 && kThreads / 32 * (32 / kTile) == kHeadGroup);
constexpr int kAbsorbCols = 64, kAbsorbSlices = 4;  // an absorb block: 64 columns, the sum over d in 4 slices
static_assert(kItemsPerBlock % kAbsorbSlices == 0);

// dst(i) = src(i) for i < n over the block, kInFlight loads a thread issued before any is stored: a
// plain loop would wait out a memory latency at every element.
template <typename T, typename Src, typename Dst>
__device__ void stage(int n, Src src, Dst dst) {
  constexpr int kInFlight = 8;
  for (int i0 = threadIdx.x; i0 < n; i0 += kInFlight * blockDim.x) {
    T v[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u)
      if (i0 + u * int(blockDim.x) < n) v[u] = src(i0 + u * int(blockDim.x));
#pragma unroll
    for (int u = 0; u < kInFlight; ++u)
      if (i0 + u * int(blockDim.x) < n) dst(i0 + u * int(blockDim.x), v[u]);
  }
}

// grid (n_heads, column blocks of kAbsorbCols, item groups): q_latent[item, h, c] = sum_d
// q_nope[item, h, d] W_uk[h][d][c]; the kAbsorbSlices slices of the block sum every 4th d, then add up.
// The whole product runs before the wait, only its store after: q was written two launches ahead
// (by the q projection; mla_rope_and_cache, the launch just ahead, rotates only the q_pe columns,
// which this kernel does not read), so the product hides behind the rope and cache launch instead
// of following it (chained_launch.cuh; q read through L2).
template <DType D>
__global__ void __launch_bounds__(kAbsorbCols * kAbsorbSlices) absorb_kernel(MlaDims dims, DeviceMatrix q,
                                                                             const MlaItem* items, int n_items,
                                                                             DeviceWeight w, float* q_latent) {
  extern __shared__ float q_nope[];  // [kItemsPerBlock][nope], then the slices' partial sums
  float* partial = q_nope + kItemsPerBlock * dims.nope;  // [kAbsorbSlices][kItemsPerBlock][kAbsorbCols]
  const int h = blockIdx.x, first = blockIdx.z * kItemsPerBlock;
  const int col = threadIdx.x % kAbsorbCols, slice = threadIdx.x / kAbsorbCols;
  const int c = blockIdx.y * kAbsorbCols + col;
  // This thread's column of W_uk[h], every kAbsorbSlices-th row, all loaded at once (a loop of
  // dependent loads took 6 us a layer). Its rows lie in one 128-row block (kMaxDecodeNope rows from a
  // multiple of 128): one block scale.
  constexpr int kRowsPerSlice = kMaxDecodeNope / kAbsorbSlices;
  static_assert(kMaxDecodeNope <= 128);
  const int64_t row0 = int64_t(h) * dims.kv_width();
  const int inside_c = min(c, dims.d_c - 1);  // the loads stay in the weight; columns past d_c get zeros
  const float scale = kv_b_scale<D>(w, row0, inside_c);
  uint32_t bits[kRowsPerSlice];
#pragma unroll
  for (int j = 0; j < kRowsPerSlice; ++j)
    bits[j] = kv_b_bits<D>(w, row0 + min(slice + j * kAbsorbSlices, dims.nope - 1), inside_c);
  const int n = min(kItemsPerBlock, n_items - first);
  stage<float>(
      kItemsPerBlock * dims.nope,
      [&](int i) {
        const int item = i / dims.nope;
        return item < n ? __ldcg(q.data + int64_t(items[first + item].q_row) * q.stride + h * dims.qk() + i % dims.nope)
                        : 0.0f;
      },
      [&](int i, float v) { q_nope[i] = v; });
  // Widened after the loads are all issued, unguarded (rows and columns clamped): a guarded load and
  // its widening, element by element, compiled to a branch around each load and its use.
  float wv[kRowsPerSlice];
#pragma unroll
  for (int j = 0; j < kRowsPerSlice; ++j)
    wv[j] = c < dims.d_c && slice + j * kAbsorbSlices < dims.nope ? kv_b_value<D>(bits[j], scale) : 0.0f;
  __syncthreads();
  float acc[kItemsPerBlock] = {};
#pragma unroll
  for (int j = 0; j < kRowsPerSlice; ++j) {
    const int d = slice + j * kAbsorbSlices;
    if (d < dims.nope)
#pragma unroll
      for (int i = 0; i < kItemsPerBlock; ++i) acc[i] += q_nope[i * dims.nope + d] * wv[j];
  }
#pragma unroll
  for (int i = 0; i < kItemsPerBlock; ++i) partial[(slice * kItemsPerBlock + i) * kAbsorbCols + col] = acc[i];
  __syncthreads();
  float sums[kItemsPerBlock / kAbsorbSlices];
#pragma unroll
  for (int k = 0; k < kItemsPerBlock / kAbsorbSlices; ++k) {
    const int i = slice + k * kAbsorbSlices;
    sums[k] = 0.0f;
    for (int s = 0; s < kAbsorbSlices; ++s) sums[k] += partial[(s * kItemsPerBlock + i) * kAbsorbCols + col];
  }
  wait_for_inputs();
#pragma unroll
  for (int k = 0; k < kItemsPerBlock / kAbsorbSlices; ++k) {
    const int i = slice + k * kAbsorbSlices;
    if (i < n && c < dims.d_c) q_latent[(int64_t(first + i) * dims.n_heads + h) * dims.d_c + c] = sums[k];
  }
}

// kCols adjacent values from shared memory as floats: a pair in one load (float2, or a BF16 pair).
template <int kCols>
__device__ inline void load_cols(const float* p, float (&v)[kCols]) {
  if constexpr (kCols == 2) {
    const float2 f = *reinterpret_cast<const float2*>(p);
    v[0] = f.x, v[1] = f.y;
  } else {
    v[0] = *p;
  }
}
template <int kCols>
__device__ inline void load_cols(const CacheValue* p, float (&v)[kCols]) {
  if constexpr (kCols == 2) {
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
    v[0] = f.x, v[1] = f.y;
  } else {
    v[0] = __bfloat162float(*p);
  }
}

// q, two cache tiles (one multiplied while the next arrives), probabilities, m, l and factors.
__host__ __device__ inline size_t decode_smem_bytes(int width) {
  return sizeof(float) * (size_t(kHeadGroup) * tile_row_stride(width) + kHeadGroup * kTile + 3 * kHeadGroup) +
         sizeof(CacheValue) * 2 * kTile * cache_tile_stride(width);
}

// grid (n_items, head groups, n_splits). Each block runs online softmax over its split of the
// context, kTile rows at a time:
//   scores: thread (quad q = tid / 16, slice s = tid % 16) computes the 4 heads x 4 rows of quad q
//           over column groups s, s + 16, ... and the 16 slices add up by shuffles, slice s
//           keeping score s of the quad (lanes_sum_scatter);
//   softmax: kLanesPerHead lanes a head (lane = row);
//   output: thread tid keeps column groups tid, tid + kThreads, ... of all kHeadGroup heads.
// A column group is a pair where rows are whole vectors (kRowsVector; a BF16 pair is one 32-bit
// load, and converting it two instructions: as many instructions as float32 tiles of single columns
// took), else a single column.
// Writes, per head of the group, the split's running max m, sum l and unnormalised latent output o:
// partial[((item * n_splits + split) * H + h) * (d_c + 2)]; a lone split writes o / l, the merge's
// result, to o_latent itself (batches of many items: the merge was a launch of tens of thousands of
// blocks that copied its input: 48 us a layer at batch 256 on an H200, Moonlight).
// The first tile is asked for before wait_for_inputs(): the items and block tables are the step's
// inputs (copied in before its first kernel), and the rows were cached by mla_rope_and_cache, which
// had finished before the absorb ahead of this kernel passed its own wait and let this one start.
// kRowsVector: rows of whole 16-byte vectors (cache_rows_are_vectors), copied asynchronously;
// otherwise staged through registers (an instance of its own, so that the common one carries none of
// that code).
template <bool kRowsVector>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) decode_attention_kernel(MlaDims dims, DeviceMatrix q,
                                                                    const float* q_latent, const MlaItem* items,
                                                                    const int32_t* tables, DeviceCacheLayer cache,
                                                                    float* partial, float* o_latent) {
  extern __shared__ float smem[];
  const int width = dims.d_c + dims.rope, stride = tile_row_stride(width), kv_stride = cache_tile_stride(width);
  float* q_s = smem;                                     // [kHeadGroup][stride]: q_latent then q_pe
  // Tile buffer b (0 or 1), [kTile][kv_stride]: worked out, not indexed from an array of two pointers
  // (which ptxas kept in local memory, a load a tile).
  auto kv_tile = [&](int b) { return reinterpret_cast<CacheValue*>(q_s + kHeadGroup * stride) + b * kTile * kv_stride; };
  float* p_s = reinterpret_cast<float*>(kv_tile(2));     // [kHeadGroup][kTile] scores, then probabilities
  float* m_s = p_s + kHeadGroup * kTile;     // [kHeadGroup] running max
  float* l_s = m_s + kHeadGroup;             // [kHeadGroup] running sum
  float* f_s = l_s + kHeadGroup;             // [kHeadGroup] rescale factor of this tile

  const MlaItem item = items[blockIdx.x];
  const int h0 = blockIdx.y * kHeadGroup, n_heads = min(kHeadGroup, dims.n_heads - h0);
  const int split = blockIdx.z, n_splits = gridDim.z;
  int begin, end;
  split_rows(item.context_len, split, n_splits, kTile, begin, end);
  const int32_t* table = tables + item.table_offset;

  // The tile of rows from t0 into `tile`: all kTile rows, those past the split's end as zeros, so
  // the output phase needs no bound. 16-byte rows arrive asynchronously (a copy group a tile).
  auto fill_tile = [&](int t0, CacheValue* tile) {
    const int n_rows = min(kTile, end - t0);
    if constexpr (kRowsVector) {
      copy_tile_async<kTile, kThreads / 32>(cache, table, t0, n_rows, width, kv_stride, tile);
    } else {
      stage<CacheValue>(
          kTile * width,
          [&](int i) {
            return i / width < n_rows ? cache_row(cache, table, t0 + i / width)[i % width] : __float2bfloat16_rn(0.0f);
          },
          [&](int i, CacheValue v) { tile[(i / width) * kv_stride + i % width] = v; });
    }
  };

  if (begin < end) fill_tile(begin, kv_tile(0));  // issued before the wait: see the kernel's comment
  wait_for_inputs();

  stage_queries<kHeadGroup, kThreads / 32>(dims, q_latent + int64_t(blockIdx.x) * dims.n_heads * dims.d_c,
                                           q.data + int64_t(item.q_row) * q.stride, h0, n_heads, stride, q_s,
                                           [](float v) { return v; });
  if (threadIdx.x < kHeadGroup) m_s[threadIdx.x] = -FLT_MAX, l_s[threadIdx.x] = 0.0f;
  constexpr int kCols = kRowsVector ? 2 : 1;
  static_assert(kMaxColsPerThread % kCols == 0);
  float o[kHeadGroup][kMaxColsPerThread] = {};  // column group j's column u at j * kCols + u
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int quad = threadIdx.x / 16, slice = threadIdx.x % 16;
  const int quad_head = quad / (kTile / 4) * 4, quad_row = quad % (kTile / 4) * 4;

  for (int t0 = begin, b = 0; t0 < end; t0 += kTile, b ^= 1) {
    const int n_rows = min(kTile, end - t0);
    next_tile(t0, end, kTile, kv_tile(b ^ 1), fill_tile);
    const CacheValue* kv_s = kv_tile(b);

    float acc[16] = {};  // head quad_head + i, row quad_row + j at 4 i + j
#pragma unroll 4 / kCols
    for (int c = kCols * slice; c < width; c += 16 * kCols) {
      float qv[4][kCols], kv[4][kCols];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        load_cols(q_s + (quad_head + i) * stride + c, qv[i]), load_cols(kv_s + (quad_row + i) * kv_stride + c, kv[i]);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int u = 0; u < kCols; ++u) acc[4 * i + j] += qv[i][u] * kv[j][u];
    }
    {  // the 16 slices' sums: slice s ends with score s of the quad
      const float score = lanes_sum_scatter<16>(acc);
      const int row = quad_row + slice % 4;
      p_s[(quad_head + slice / 4) * kTile + row] = row < n_rows ? score * dims.softmax_scale : -INFINITY;
    }
    __syncthreads();

    {
      const int h = warp * (32 / kLanesPerHead) + lane / kLanesPerHead, t = lane % kLanesPerHead;
      p_s[h * kTile + t] = online_softmax_step<kLanesPerHead>(p_s[h * kTile + t], m_s + h, l_s + h, f_s + h);
    }
    __syncthreads();

    // o[h][c] = o[h][c] * f[h] + sum_t p[h][t] kv[t][c], four rows at a time (p read as float4).
#pragma unroll
    for (int h = 0; h < kHeadGroup; ++h)
#pragma unroll
      for (int j = 0; j < kMaxColsPerThread; ++j) o[h][j] *= f_s[h];
    // A loop, not unrolled: straight-line code this long, run once a warp for a one-tile split, kept
    // the warps waiting on instruction fetches, and took 221 registers against 117 (H200, Moonlight
    // fp8 batch-1 decode 392.6 tok/s unrolled, 395.9 not).
#pragma unroll 1
    for (int t = 0; t < kTile; t += 4) {
      float kv[4][kMaxColsPerThread];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int j = 0; j < kMaxColsPerThread / kCols; ++j) {
          const int c = kCols * (threadIdx.x + j * kThreads);
          float v[kCols] = {};
          if (c < dims.d_c) load_cols(kv_s + (t + r) * kv_stride + c, v);  // past d_c: rope columns, unused
#pragma unroll
          for (int u = 0; u < kCols; ++u) kv[r][j * kCols + u] = v[u];
        }
#pragma unroll
      for (int h = 0; h < kHeadGroup; ++h) {
        const float4 p = *reinterpret_cast<const float4*>(p_s + h * kTile + t);
#pragma unroll
        for (int j = 0; j < kMaxColsPerThread; ++j)
          o[h][j] += p.x * kv[0][j] + p.y * kv[1][j] + p.z * kv[2][j] + p.w * kv[3][j];
      }
    }
  }
  __syncthreads();
  const bool lone = n_splits == 1;
  for (int h = 0; h < n_heads; ++h) {
    float* out = lone ? o_latent + (int64_t(blockIdx.x) * dims.n_heads + h0 + h) * dims.d_c
                      : partial + ((int64_t(blockIdx.x) * n_splits + split) * dims.n_heads + h0 + h) * (dims.d_c + 2);
    const float divisor = lone ? l_s[h] : 1.0f;  // the merge's o / l, divided as it divides
#pragma unroll
    for (int j = 0; j < kMaxColsPerThread; ++j) {
      const int c = kCols * (threadIdx.x + j / kCols * kThreads) + j % kCols;
      if (c < dims.d_c) out[c] = o[h][j] / divisor;
    }
    if (threadIdx.x == 0 && !lone) out[dims.d_c] = m_s[h], out[dims.d_c + 1] = l_s[h];
  }
}

// grid (n_items, n_heads, column blocks of kMergeCols): o_latent = sum_s o_s e^(m_s - m) / sum_s
// l_s e^(m_s - m). Split s's weight is worked out once into shared memory; then kMergeGroups thread
// groups each sum every kMergeGroups-th split of a column, and the groups add up.
constexpr int kMergeCols = 64, kMergeGroups = 4;

__global__ void __launch_bounds__(kMergeCols * kMergeGroups) merge_kernel(MlaDims dims, int n_splits,
                                                                          const float* partial, float* o_latent) {
  wait_for_inputs();
  extern __shared__ float weight_s[];  // [n_splits]
  __shared__ float sums[kMergeGroups][kMergeCols];
  __shared__ float l_total;
  const int item = blockIdx.x, h = blockIdx.y;
  const int64_t row = dims.d_c + 2;
  auto part = [&](int s) { return partial + ((int64_t(item) * n_splits + s) * dims.n_heads + h) * row; };
  if (threadIdx.x < 32) {
    float m = -FLT_MAX;
    for (int s = threadIdx.x; s < n_splits; s += 32)
      if (part(s)[dims.d_c + 1] > 0.0f) m = fmaxf(m, part(s)[dims.d_c]);
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    float l = 0.0f;
    for (int s = threadIdx.x; s < n_splits; s += 32) {
      const float l_s = part(s)[dims.d_c + 1], w = l_s > 0.0f ? expf(part(s)[dims.d_c] - m) : 0.0f;
      weight_s[s] = w;
      l += l_s * w;
    }
    l = warp_sum(l);
    if (threadIdx.x == 0) l_total = l;
  }
  __syncthreads();
  const int col = threadIdx.x % kMergeCols, group = threadIdx.x / kMergeCols;
  const int c = blockIdx.z * kMergeCols + col;
  float acc = 0.0f;
  if (c < dims.d_c) {
#pragma unroll 8
    for (int s = group; s < n_splits; s += kMergeGroups) acc += weight_s[s] * part(s)[c];
  }
  sums[group][col] = acc;
  __syncthreads();
  if (group == 0 && c < dims.d_c) {
    float total = 0.0f;
    for (int g = 0; g < kMergeGroups; ++g) total += sums[g][col];
    o_latent[(int64_t(item) * dims.n_heads + h) * dims.d_c + c] = total / l_total;
  }
}

// grid (n_heads, ceil(v_dim / 8)); warp r of the block holds row r of W_uv[h] and applies it to
// every item.
template <DType D>
__global__ void unabsorb_kernel(MlaDims dims, const float* o_latent, const MlaItem* items, int n_items, DeviceWeight w,
                                DeviceMatrix out) {
  const int h = blockIdx.x, r = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t w_row = int64_t(h) * dims.kv_width() + dims.nope + min(r, dims.v_dim - 1);
  constexpr int kMaxPerLane = kMaxDecodeLatent / 32;
  // The weight row is read while the attention ahead finishes (chained_launch.cuh: weights are never
  // written in a step; decode_kv_b() finished a float32 copy before the first absorb), every load
  // first, as in the absorb. The lane's columns lane + 32 j of each 4 consecutive j lie in one
  // 128-column block: one scale for them.
  uint32_t bits[kMaxPerLane];
  float scale[kMaxPerLane / 4];
#pragma unroll
  for (int j = 0; j < kMaxPerLane; ++j) {
    const int c = min(lane + 32 * j, dims.d_c - 1);
    if (j % 4 == 0) scale[j / 4] = kv_b_scale<D>(w, w_row, c);
    bits[j] = kv_b_bits<D>(w, w_row, c);
  }
  wait_for_inputs();
  if (r >= dims.v_dim) return;
  float wv[kMaxPerLane];
#pragma unroll
  for (int j = 0; j < kMaxPerLane; ++j) wv[j] = lane + 32 * j < dims.d_c ? kv_b_value<D>(bits[j], scale[j / 4]) : 0.0f;
  for (int i = 0; i < n_items; ++i) {
    const float* o = o_latent + (int64_t(i) * dims.n_heads + h) * dims.d_c;
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) acc += wv[j] * o[min(lane + 32 * j, dims.d_c - 1)];  // zero weights past d_c
    acc = warp_sum(acc);
    if (lane == 0) out.data[int64_t(items[i].q_row) * out.stride + h * dims.v_dim + r] = acc;
  }
}

// The CUDA-core kernel, for widths the tensor-core one does not take.
void launch_decode_attention_cuda_cores(MlaDims dims, DeviceMatrix q, const float* q_latent, const MlaItem* items,
                                        int n_items, const int32_t* tables, DeviceCacheLayer cache, int n_splits,
                                        float* partial, float* o_latent, cudaStream_t stream) {
  // The attribute is the kernel's, not a launch's: set once for each instance, for the widest rows
  // allowed (a failure shows as the launch's error).
  auto allow_widest_rows = [](auto kernel) {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                int(decode_smem_bytes(kMaxDecodeLatent + kMaxDecodeRope)));
  };
  static const cudaError_t configured[2] = {allow_widest_rows(decode_attention_kernel<false>),
                                            allow_widest_rows(decode_attention_kernel<true>)};
  (void)configured;
  const int width = dims.d_c + dims.rope;
  const auto kernel = cache_rows_are_vectors(width, cache.row_width) ? decode_attention_kernel<true>
                                                                     : decode_attention_kernel<false>;
  const dim3 grid(unsigned(n_items), unsigned((dims.n_heads + kHeadGroup - 1) / kHeadGroup), unsigned(n_splits));
  launch_chained(kernel, grid, kThreads, decode_smem_bytes(width), stream, dims, q, q_latent, items, tables, cache,
                 partial, o_latent);
}

}  // namespace

bool decode_kv_b_as_stored(const DeviceWeight& kv_b_proj, MlaDims dims) {
  if (kv_b_proj.dtype == DType::BF16) return true;
  return kv_b_proj.dtype == DType::F8_E4M3 && kv_b_proj.block_out == 128 && kv_b_proj.block_in == 128 &&
         dims.kv_width() % 128 == 0 && dims.d_c % 128 == 0;
}

void launch_mla_absorb(MlaDims dims, DeviceMatrix q, const MlaItem* items, int n_items, const DeviceWeight& kv_b_proj,
                       float* q_latent, cudaStream_t stream) {
  if (n_items > kMaxFewItems) return launch_mla_absorb_tiled(dims, q, items, n_items, kv_b_proj, q_latent, stream);
  const dim3 grid(unsigned(dims.n_heads), unsigned((dims.d_c + kAbsorbCols - 1) / kAbsorbCols),
                  unsigned((n_items + kItemsPerBlock - 1) / kItemsPerBlock));
  const size_t smem = sizeof(float) * kItemsPerBlock * (dims.nope + kAbsorbSlices * kAbsorbCols);
  const auto kernel = by_kv_b_dtype(kv_b_proj, absorb_kernel<DType::F32>, absorb_kernel<DType::BF16>,
                                    absorb_kernel<DType::F8_E4M3>);
  launch_chained(kernel, grid, kAbsorbCols * kAbsorbSlices, smem, stream, dims, q, items, n_items, kv_b_proj, q_latent);
}

MlaDecodePlan plan_mla_decode(MlaDims dims, int n_items, int64_t context_bound, int sm_count) {
  auto tiles = [&](int rows) { return (context_bound + rows - 1) / rows; };
  auto groups = [&](int heads) { return int64_t(dims.n_heads + heads - 1) / heads; };
  MlaDecodePlan plan;
  // Batch-1 decode after a 1K prompt fills 32 blocks of 16 heads: slower than 64 of 8 on CUDA cores
  // (Moonlight on an H200: 311 against 337 tok/s), where 32K tokens ran 188 against 143.
  plan.tensor_cores = decode_on_tensor_cores(dims) && tiles(kMmaTile) * groups(kMmaHeadGroup) >= sm_count;
  // At least a tile of rows a part, and the splits in one wave of blocks (one an SM on tensor cores,
  // where registers and shared memory leave room for one; kBlocksPerSm on CUDA cores): a split more
  // that spills into a second wave doubles the launch's time for a few blocks (batch 32 of 16-head
  // groups: 5 splits are 160 blocks on 132 SMs, each running a fifth of its context, where 4 are 128
  // blocks of a quarter).
  const int64_t blocks = int64_t(n_items) * groups(plan.tensor_cores ? kMmaHeadGroup : kHeadGroup);
  const int64_t by_sms = int64_t(sm_count) * (plan.tensor_cores ? 1 : kBlocksPerSm) / blocks;
  plan.tile_rows = plan.tensor_cores ? kMmaTile : kTile;
  const int64_t n_tiles = tiles(plan.tile_rows);
  const int64_t at_most = std::max<int64_t>(1, std::min(by_sms, n_tiles));
  // Splits take whole tiles, as many each (split_rows): 68 tiles over at most 66 splits are 34
  // splits of 2, not 66 of which 32 would be empty blocks and parts for the merge to read.
  const int64_t per_split = (n_tiles + at_most - 1) / at_most;
  plan.n_splits = int((n_tiles + per_split - 1) / per_split);
  return plan;
}

void launch_mla_decode_attention(MlaDims dims, DeviceMatrix q, const float* q_latent, const MlaItem* items,
                                 int n_items, const int32_t* tables, DeviceCacheLayer cache, MlaDecodePlan plan,
                                 float* partial, float* o_latent, cudaStream_t stream) {
  const int n_splits = plan.n_splits;
  if (plan.tensor_cores)
    launch_decode_attention_mma(dims, q, q_latent, items, n_items, tables, cache, n_splits, partial, o_latent, stream);
  else
    launch_decode_attention_cuda_cores(dims, q, q_latent, items, n_items, tables, cache, n_splits, partial, o_latent,
                                       stream);
  if (n_splits == 1) return;  // the attention wrote o_latent
  const dim3 merge_grid(unsigned(n_items), unsigned(dims.n_heads), unsigned((dims.d_c + kMergeCols - 1) / kMergeCols));
  launch_chained(merge_kernel, merge_grid, kMergeCols * kMergeGroups, sizeof(float) * n_splits, stream, dims, n_splits,
                 partial, o_latent);
}

void launch_mla_unabsorb(MlaDims dims, const float* o_latent, const MlaItem* items, int n_items,
                         const DeviceWeight& kv_b_proj, DeviceMatrix out, cudaStream_t stream) {
  if (n_items > kMaxFewItems) return launch_mla_unabsorb_tiled(dims, o_latent, items, n_items, kv_b_proj, out, stream);
  const dim3 grid(unsigned(dims.n_heads), unsigned((dims.v_dim + 7) / 8));
  const auto kernel = by_kv_b_dtype(kv_b_proj, unabsorb_kernel<DType::F32>, unabsorb_kernel<DType::BF16>,
                                    unabsorb_kernel<DType::F8_E4M3>);
  launch_chained(kernel, grid, 256, 0, stream, dims, o_latent, items, n_items, kv_b_proj, out);
}

}  // namespace dsv3::cuda
