// MLA decode attention on tensor cores: the absorbed form of mla_decode.cu, its products as
// mma.sync m16n8k16 over BF16 operands with float32 sums, where the CUDA-core kernel was bound by
// issuing its shared-memory operands. The operands are the cache's own BF16 values, and the queries
// and probabilities rounded to BF16, as the reference model's attention rounds them. A block takes 16
// heads of one item (the M of the product) over one split of its context, kTile cache rows a step, so
// that the cache is read once for all 16:
//   scores S = Q [16 x width] K^T: warp w takes tile rows 8 (w % 4).. over half w / 4 of the
//            columns; the halves meet in shared memory;
//   softmax: online, as in mla_decode.cu; warp w takes heads 2w and 2w + 1, a lane a row;
//   output:  O [16 x d_c] += P V: warp w keeps columns (d_c / 8) w.. in its accumulators, V's B
//            fragments two 8-column tiles at a time by ldmatrix.trans.
// Fragment layouts: mma.cuh.
#include "dsv3/backend/cuda/mla_decode_mma.h"

#include <cfloat>

#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/mla_decode_rows.cuh"
#include "dsv3/backend/cuda/mma.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kHeads = kMmaHeadGroup;
constexpr int kTile = kMmaTile;  // a lane a row in the softmax
constexpr int kWarps = 8, kThreads = 32 * kWarps;
constexpr int kScoreHalves = 2;
constexpr int kMaxOutTiles = kMaxDecodeLatent / (8 * kWarps);
// P's rows 20 words apart: an A fragment's 8 rows x 4 words fall in distinct banks.
constexpr int kProbStride = kTile + 8;
static_assert(kWarps == 4 * kScoreHalves && kHeads % kWarps == 0 && kTile % 16 == 0);

// q, two cache tiles (one multiplied while the next arrives), probabilities (all BF16, rows
// cache_tile_stride apart), the score halves, m, l and factors.
__host__ __device__ inline size_t smem_bytes(int width) {
  return sizeof(CacheValue) * (size_t(kHeads + 2 * kTile) * cache_tile_stride(width) + kHeads * kProbStride) +
         sizeof(float) * (kScoreHalves * kHeads * kTile + 3 * kHeads);
}

__device__ inline uint32_t pair_bits(const CacheValue* p) { return *reinterpret_cast<const uint32_t*>(p); }

// The A fragment at row 0, column k of a row-major BF16 matrix whose rows are `stride` values apart.
__device__ inline void a_fragment(uint32_t (&a)[4], const CacheValue* m, int stride, int k, int g, int t) {
  const CacheValue* p = m + g * stride + k + 2 * t;
  a[0] = pair_bits(p), a[1] = pair_bits(p + 8 * stride), a[2] = pair_bits(p + 8), a[3] = pair_bits(p + 8 * stride + 8);
}

// grid (n_items, head groups, n_splits); partial results as mla_decode.cu's kernel writes them.
// The first tile is asked for before wait_for_inputs(), as there (see that kernel's comment).
__global__ void __launch_bounds__(kThreads, 1) decode_attention_mma_kernel(MlaDims dims, DeviceMatrix q,
                                                                        const float* q_latent, const MlaItem* items,
                                                                        const int32_t* tables, DeviceCacheLayer cache,
                                                                        float* partial, float* o_latent) {
  extern __shared__ float smem[];
  const int width = dims.d_c + dims.rope, stride = cache_tile_stride(width);
  auto* q_s = reinterpret_cast<CacheValue*>(smem);             // [kHeads][stride]
  // Tile buffer b (0 or 1), [kTile][stride]: worked out, not indexed from an array of two pointers
  // (which ptxas kept in local memory, a load a tile).
  auto kv_tile = [&](int b) { return q_s + (kHeads + b * kTile) * stride; };
  CacheValue* p_s = kv_tile(2);                                // [kHeads][kProbStride]
  auto* s_part = reinterpret_cast<float*>(p_s + kHeads * kProbStride);  // [kScoreHalves][kHeads][kTile]
  float* m_s = s_part + kScoreHalves * kHeads * kTile;         // [kHeads] running max
  float* l_s = m_s + kHeads;                                   // [kHeads] running sum
  float* f_s = l_s + kHeads;                                   // [kHeads] rescale factor of this tile

  const MlaItem item = items[blockIdx.x];
  const int h0 = blockIdx.y * kHeads, n_heads = min(kHeads, dims.n_heads - h0);
  int begin, end;
  split_rows(item.context_len, blockIdx.z, gridDim.z, kTile, begin, end);
  const int32_t* table = tables + item.table_offset;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;

  // All kTile rows from t0, those past the split's end as zeros; a copy group a tile.
  auto fill_tile = [&](int t0, CacheValue* tile) {
    copy_tile_async<kTile, kWarps>(cache, table, t0, min(kTile, end - t0), width, stride, tile);
  };
  if (begin < end) fill_tile(begin, kv_tile(0));
  wait_for_inputs();

  // The group's queries in BF16, rounded once.
  stage_queries<kHeads, kWarps>(dims, q_latent + int64_t(blockIdx.x) * dims.n_heads * dims.d_c,
                                q.data + int64_t(item.q_row) * q.stride, h0, n_heads, stride, q_s,
                                [](float v) { return __float2bfloat16_rn(v); });
  if (threadIdx.x < kHeads) m_s[threadIdx.x] = -FLT_MAX, l_s[threadIdx.x] = 0.0f;

  const int out_tiles = dims.d_c / (8 * kWarps), c0 = warp * out_tiles * 8;
  float o[kMaxOutTiles][4] = {};
  for (int t0 = begin, b = 0; t0 < end; t0 += kTile, b ^= 1) {
    const int n_rows = min(kTile, end - t0);
    next_tile(t0, end, kTile, kv_tile(b ^ 1), fill_tile);
    const CacheValue* kv_s = kv_tile(b);
    {  // scores of tile rows 8j.. over columns [half * k_half, (half + 1) * k_half)
      const int j = warp % 4, half = warp / 4, k_half = width / kScoreHalves;
      const CacheValue* k_row = kv_s + (j * 8 + g) * stride + half * k_half + 2 * t;
      const CacheValue* q_half = q_s + half * k_half;
      // Two sums, of even and odd steps, so that an mma waits on the one two before it.
      float s[4] = {}, s_odd[4] = {};
#pragma unroll 3
      for (int k = 0; k < k_half; k += 32) {
        uint32_t a[4];
        a_fragment(a, q_half, stride, k, g, t);
        mma_bf16(s, a, pair_bits(k_row + k), pair_bits(k_row + k + 8));
        if (k + 16 < k_half) {
          a_fragment(a, q_half, stride, k + 16, g, t);
          mma_bf16(s_odd, a, pair_bits(k_row + k + 16), pair_bits(k_row + k + 24));
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) s[i] += s_odd[i];
      float* out = s_part + half * kHeads * kTile;
      out[g * kTile + j * 8 + 2 * t] = s[0], out[g * kTile + j * 8 + 2 * t + 1] = s[1];
      out[(g + 8) * kTile + j * 8 + 2 * t] = s[2], out[(g + 8) * kTile + j * 8 + 2 * t + 1] = s[3];
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kHeads / kWarps; ++i) {
      const int h = warp * (kHeads / kWarps) + i;
      const float s =
          lane < n_rows ? (s_part[h * kTile + lane] + s_part[(kHeads + h) * kTile + lane]) * dims.softmax_scale : -INFINITY;
      p_s[h * kProbStride + lane] = __float2bfloat16_rn(online_softmax_step<kTile>(s, m_s + h, l_s + h, f_s + h));
    }
    __syncthreads();
    // O = O * f + P V over this warp's columns; rows g and g + 8 of each accumulator are heads g, g + 8.
    const float f_low = f_s[g], f_high = f_s[g + 8];
#pragma unroll
    for (int n = 0; n < kMaxOutTiles; ++n) o[n][0] *= f_low, o[n][1] *= f_low, o[n][2] *= f_high, o[n][3] *= f_high;
    // ldmatrix's lane 8i + r gives row r of matrix i: rows k.., k + 8.. of tile n, then of tile n + 1.
    const int v_row = lane % 16, v_col = lane / 16 * 8;
#pragma unroll
    for (int k = 0; k < kTile; k += 16) {
      uint32_t a[4];
      a_fragment(a, p_s, kProbStride, k, g, t);
      const CacheValue* v_rows = kv_s + (k + v_row) * stride + c0 + v_col;
#pragma unroll
      for (int n = 0; n < kMaxOutTiles; n += 2)
        if (n < out_tiles) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, v_rows + n * 8);
          mma_bf16(o[n], a, b[0], b[1]);
          mma_bf16(o[n + 1], a, b[2], b[3]);
        }
    }
  }
  __syncthreads();
  // A lone split writes the merge's result, o / l (divided as the merge divides), to o_latent.
  const bool lone = gridDim.z == 1;
  const int64_t row = lone ? dims.d_c : dims.d_c + 2;
  float* out = lone ? o_latent + (int64_t(blockIdx.x) * dims.n_heads + h0) * row
                    : partial + ((int64_t(blockIdx.x) * gridDim.z + blockIdx.z) * dims.n_heads + h0) * row;
  const float low = lone ? l_s[g] : 1.0f, high = lone ? l_s[g + 8] : 1.0f;
#pragma unroll
  for (int n = 0; n < kMaxOutTiles; ++n) {
    if (n >= out_tiles) break;
    const int c = c0 + n * 8 + 2 * t;
    if (g < n_heads) out[g * row + c] = o[n][0] / low, out[g * row + c + 1] = o[n][1] / low;
    if (g + 8 < n_heads) out[(g + 8) * row + c] = o[n][2] / high, out[(g + 8) * row + c + 1] = o[n][3] / high;
  }
  if (threadIdx.x < n_heads && !lone)
    out[threadIdx.x * row + dims.d_c] = m_s[threadIdx.x], out[threadIdx.x * row + dims.d_c + 1] = l_s[threadIdx.x];
}

}  // namespace

// Score halves of whole 16-column steps, and pairs of 8-column output tiles for each warp; rows of
// whole steps are whole 16-byte vectors of the cache too (copy_tile_async).
static_assert(16 * kScoreHalves % (16 / sizeof(CacheValue)) == 0);
bool decode_on_tensor_cores(MlaDims dims) {
  return dims.d_c % (16 * kWarps) == 0 && dims.d_c <= kMaxDecodeLatent && (dims.d_c + dims.rope) % (16 * kScoreHalves) == 0;
}

void launch_decode_attention_mma(MlaDims dims, DeviceMatrix q, const float* q_latent, const MlaItem* items, int n_items,
                                 const int32_t* tables, DeviceCacheLayer cache, int n_splits, float* partial,
                                 float* o_latent, cudaStream_t stream) {
  // The attribute is the kernel's, not a launch's: set once, for the widest rows allowed (a failure
  // shows as the launch's error).
  static const cudaError_t configured =
      cudaFuncSetAttribute(decode_attention_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(smem_bytes(kMaxDecodeLatent + kMaxDecodeRope)));
  (void)configured;
  const dim3 grid(unsigned(n_items), unsigned((dims.n_heads + kHeads - 1) / kHeads), unsigned(n_splits));
  launch_chained(decode_attention_mma_kernel, grid, kThreads, smem_bytes(dims.d_c + dims.rope), stream, dims, q,
                 q_latent, items, tables, cache, partial, o_latent);
}

}  // namespace dsv3::cuda
