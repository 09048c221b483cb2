// Grouped products for groups of a few rows: a decode batch's experts, each given a few of its
// tokens (Moonlight at batch 32: 3 on average of 64 experts, top 6; at batch 256, 24), in tiles of
// 16 tokens.
//
// grouped_gemm.cu puts both operands through shared memory: each 64-column slice of a 128-row weight
// tile is widened, stored and read back with ldmatrix by every warp of the block. With 16 or 32 rows
// of x that traffic, not DRAM, bounded the product (Nsight Compute, H200, batch 256: L1/shared pipe
// 88% busy, DRAM 15%). Here a lane loads its weights from memory straight into mma.sync's B fragments
// (tokens are mma's M, weight rows its N), and only x is staged in shared memory.
//
// Operands. BF16 weights as stored against x in two BF16 parts, as grouped_gemm.cu. FP8 weights on
// FP16 tensor cores (fp16_parts.cuh): the codes widened exactly, x in two FP16 parts at a power of two
// a token and stage; a stage of 128 columns lies in one scale block of the block's 128 rows (the
// weight's blocks are multiples of 128 both ways: grouped_few_ok), so its sums are multiplied once by
// that scale and by the tokens' inverse powers of two. That is float32 accuracy against the FP8
// weight, where widening each code, scaling and rounding it to BF16 took three conversions a pair.
//
// Fragments. Lane (g, t) of a warp's n-tile reads weight row g's 16 columns [16t, 16t + 16) of each
// 64-column slice: 16 FP8 bytes or 32 BF16 ones, the row's four lanes a 64-byte run. A sum over k
// does not care which column is called which, so step j of a slice (four k16 steps) takes the lane's
// columns 16t + 4j .. 16t + 4j + 3 as mma's logical columns (2t, 2t+1, 2t+8, 2t+9), in A and B alike.
//
// Gate and up in one launch (an FFN's first half): a block's first two warps multiply by the
// group's gate weight, the last two by its up weight, over the same 64 rows, and the block writes
// silu(gate) * up. Against a launch each and a third for silu: x staged once for both, no up rows
// written and read back, and 2 x 671 blocks of Moonlight's batch-32 experts in one grid, not two of
// 1.3 waves each (H100, Moonlight FP8 decode at batch 32: 2158 -> 2397 tok/s, bench/RESULTS.md).
//
// Dense products of 17 to 64 rows (a decode batch's projections, LinearPath::Few) take the same
// tiles as one group, K split over blocks until every SM has kBlocksPerSm of them; the splits add
// their sums into y, zeroed first. The weights cross the bus once a row tile, as stored, where
// cuBLASLt's 16-bit product took a 16-bit copy of an FP8 weight made for every call (5 bytes moved a
// weight), x's conversions, and four launches. (The row tiles of a column tile are blockIdx.y apart:
// Moonlight's lm_head, 671 MB, at 32 rows reads its weight twice from memory, 467 us.)
#include <cuda_bf16.h>

#include <algorithm>

#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/cuda_check.h"
#include "dsv3/backend/cuda/fp16_parts.cuh"
#include "dsv3/backend/cuda/grouped_few.h"
#include "dsv3/backend/cuda/grouped_tile.cuh"
#include "dsv3/backend/cuda/mma.cuh"
#include "dsv3/backend/cuda/silu.cuh"
#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::cuda {
namespace {

// A tile's rows of y (tokens), up to 32 a group on average (grouped_few_ok): 16-row tiles ran
// Moonlight FP8 decode at batch 256 (24 rows an expert on average) at 8255 tok/s, 32-row ones (three
// blocks an SM, 168 registers) at 7713 (H200, side by side).
constexpr int kBM = 16, kMi = kBM / 16;
constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kNi = 4;                               // n-tiles of 8 weight rows a warp
constexpr int kWarpCols = kNi * 8;                   // weight rows (columns of y) a warp
constexpr int kBN = kWarps * kWarpCols;              // and a block
constexpr int kSliceCols = 64;                       // a slice: 16 columns a lane, four lanes a row
constexpr int kAhead = 2;                            // slices of weights a lane has asked for ahead
constexpr int kStageCols = kAhead * kSliceCols;      // x's columns staged at a time: 128, a scale block
constexpr int kBlocksPerSm = 4;                      // resident at 124-128 registers a thread (ptxas -v)
// Staged rows are kStageCols + 4 16-bit values apart, 2 banks past a multiple of 32: the 8-byte
// fragment reads of a half-warp (rows g = 0..3, columns 16t) fall in distinct banks.
constexpr int kLd = kStageCols + 4;

// x's parts of a stage: FP16 against FP8 weights (unscale: each row's inverse power of two), BF16
// against BF16 ones (unscale unused).
struct alignas(16) Stage {
  uint16_t high[kBM][kLd], low[kBM][kLd];
  float unscale[kBM];
};

// A lane's weights of one slice: its 16 columns of each n-tile's row.
template <DType D>
struct SliceWeights {
  static constexpr int kVectors = D == DType::F8_E4M3 ? 1 : 2;
  uint4 w[kNi][kVectors];
};

template <DType D>
__device__ void ask(SliceWeights<D>& out, const uint8_t* const (&rows)[kNi], int s) {
  constexpr int kBytes = D == DType::F8_E4M3 ? 1 : 2;
#pragma unroll
  for (int i = 0; i < kNi; ++i)
#pragma unroll
    for (int v = 0; v < SliceWeights<D>::kVectors; ++v)
      out.w[i][v] = load_weight_vector(rows[i] + int64_t(s) * kSliceCols * kBytes + 16 * v);
}

// B fragment (b0, b1) of step j from the lane's weights of n-tile i: its columns 4j .. 4j + 3.
template <DType D>
__device__ __forceinline__ void b_fragment(const SliceWeights<D>& sw, int i, int j, uint32_t& b0, uint32_t& b1) {
  if constexpr (D == DType::F8_E4M3) {
    const uint32_t codes = vector_word(sw.w[i][0], j);
    b0 = f16x2_of_e4m3x2(codes & 0xffffu), b1 = f16x2_of_e4m3x2(codes >> 16);
  } else {
    b0 = vector_word(sw.w[i][j / 2], 2 * j % 4), b1 = vector_word(sw.w[i][j / 2], 2 * j % 4 + 1);
  }
}

template <DType D>
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (D == DType::F8_E4M3)
    mma_f16(d, a, b0, b1);
  else
    mma_bf16(d, a, b0, b1);
}

// x's stage of columns [c0, c0 + kStageCols) for the tile's rows (rows[r]: row r of x, null past
// the group), as floats in flight: a thread kValues float4 of them, value i of row
// (threadIdx.x + i kThreads) / 32 at float4 threadIdx.x % 32, so that a warp holds whole rows.
template <DType D>
struct StageLoader {
  static constexpr int kGroups = kStageCols / 4, kValues = kBM * kGroups / kThreads;
  static_assert(kGroups == 32, "a warp's float4 are one row of the stage");
  float4 v[kValues];

  __device__ void load(const float* const* rows, int64_t c0, int64_t K) {
#pragma unroll
    for (int i = 0; i < kValues; ++i) {
      const float* row = rows[(threadIdx.x + i * kThreads) / kGroups];
      const int64_t c = c0 + 4 * (threadIdx.x % kGroups);
      v[i] = row && c < K ? *reinterpret_cast<const float4*>(row + c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
  }

  __device__ void store(Stage& stage) const {
#pragma unroll
    for (int i = 0; i < kValues; ++i) {
      const int r = (threadIdx.x + i * kThreads) / kGroups, c = 4 * (threadIdx.x % kGroups);
      float scale = 1.0f;
      if constexpr (D == DType::F8_E4M3) {  // the row's power of two, from its largest magnitude
        float m = fmaxf(fmaxf(fabsf(v[i].x), fabsf(v[i].y)), fmaxf(fabsf(v[i].z), fabsf(v[i].w)));
        for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
        const int e = scale_exponent(__float_as_uint(m));
        scale = power_of_two(e);
        if (threadIdx.x % 32 == 0) stage.unscale[r] = power_of_two(-e);
      }
      const float x[4] = {v[i].x * scale, v[i].y * scale, v[i].z * scale, v[i].w * scale};
      uint2 high, low;
      if constexpr (D == DType::F8_E4M3)
        split_f16(x[0], x[1], high.x, low.x), split_f16(x[2], x[3], high.y, low.y);
      else
        split_bf16(x[0], x[1], high.x, low.x), split_bf16(x[2], x[3], high.y, low.y);
      *reinterpret_cast<uint2*>(&stage.high[r][c]) = high;
      *reinterpret_cast<uint2*>(&stage.low[r][c]) = low;
    }
  }
};

// Columns of y a block: kBN, or half that for gate_up, whose warps 0-1 and 2-3 read the same rows
// of two weights.
template <bool kGateUp>
constexpr int kOutCols = kGateUp ? kBN / 2 : kBN;

// A gate_up block's end: the warps' sums through shared memory (`tile`, the stages' memory, free
// once the last stage is done), gate at the tile's columns [0, 64), up at [64, 128), then y's
// kOutCols columns from n0 of the tile's rows as silu(gate) * up.
__device__ void store_gate_up(const float (&acc)[kMi][kNi][4], TileRows rows, int64_t n0, int64_t N, float* tile,
                              DeviceMatrix y) {
  constexpr int kLdTile = kBN + 4;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
    for (int i = 0; i < kNi; ++i) {
      const int r = mi * 16 + g, c = warp * kWarpCols + i * 8 + 2 * t;
      *reinterpret_cast<float2*>(&tile[r * kLdTile + c]) = make_float2(acc[mi][i][0], acc[mi][i][1]);
      *reinterpret_cast<float2*>(&tile[(r + 8) * kLdTile + c]) = make_float2(acc[mi][i][2], acc[mi][i][3]);
    }
  __syncthreads();
  constexpr int kCols = kOutCols<true>;
  for (int e = threadIdx.x; e < kBM * kCols; e += kThreads) {
    const int r = e / kCols, c = e % kCols;
    const int64_t row = rows.begin + r, col = n0 + c;
    if (row < rows.end && col < N)
      y.data[row * y.stride + col] = silu(tile[r * kLdTile + c]) * tile[r * kLdTile + kCols + c];
  }
}

// grid (column tiles of kOutCols, row tiles of kBM the groups could need, splits of K). Warp w
// computes the tile's rows of x W^T at columns [kWarpCols w, kWarpCols (w + 1)) of the block's kBN;
// for gate_up, W is the gate for w < 2 and the up weight (the table's next) after, at columns
// kWarpCols (w % 2). Block z sums over W's columns [z k_chunk, (z + 1) k_chunk) (k_chunk a multiple
// of kStageCols); with more than one split it adds its sums into y, which starts at zero.
template <DType D, bool kGateUp>
__global__ void __launch_bounds__(kThreads) grouped_few_kernel(GroupedWeights weights, const int32_t* offsets,
                                                               int n_groups, DeviceMatrix x, const int32_t* x_rows,
                                                               DeviceMatrix y, int64_t k_chunk) {
  constexpr bool kFp8 = D == DType::F8_E4M3;
  extern __shared__ uint4 shared_memory[];
  auto* stages = reinterpret_cast<Stage*>(shared_memory);  // two: one multiplied while the next is stored
  __shared__ const float* x_src[kBM];
  // One group of rows in order (a dense product): its tile needs no offsets and its weight is
  // known, so the weight is asked for before the wait (chained_launch.cuh).
  const bool dense = offsets == nullptr;
  if (!dense) wait_for_inputs();
  const TileRows rows = find_tile<kBM>(offsets, n_groups, y.rows, int(blockIdx.y));
  if (rows.group < 0) {
    if (dense) wait_for_inputs();
    return;
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  const int weight_index = weights.index + (kGateUp ? warp / 2 : 0);
  const DeviceWeight w =
      weights.table ? weights.table[int64_t(rows.group) * weights.stride + weight_index] : weights.one;
  // The block's columns of W: [k0, k0 + K).
  const int64_t k0 = int64_t(blockIdx.z) * k_chunk, K = min(w.cols - k0, k_chunk);
  const int64_t N = w.rows, n0 = int64_t(blockIdx.x) * kOutCols<kGateUp>;
  const int64_t warp_n0 = n0 + (kGateUp ? warp % 2 : warp) * kWarpCols;

  const uint8_t* w_rows[kNi];
#pragma unroll
  for (int i = 0; i < kNi; ++i) {
    const int64_t n = min(warp_n0 + i * 8 + g, N - 1);  // rows past N read the last, not stored
    w_rows[i] = static_cast<const uint8_t*>(w.data) + (n * w.cols + k0 + 16 * t) * (kFp8 ? 1 : 2);
  }
  // FP8: the scales of the warp's rows, a stage each (the block's rows and a stage's columns lie
  // in one scale block).
  const float* scales = kFp8 ? w.scale_inv + n0 / w.block_out * ((w.cols + w.block_in - 1) / w.block_in) : nullptr;
  const int n_slices = int(K / kSliceCols);
  SliceWeights<D> ahead[kAhead];
#pragma unroll
  for (int u = 0; u < kAhead; ++u)
    if (u < n_slices) ask(ahead[u], w_rows, u);
  if (dense) wait_for_inputs();

  if (threadIdx.x < kBM) {
    const int64_t slot = rows.begin + threadIdx.x;
    x_src[threadIdx.x] = slot < rows.end ? x.data + int64_t(x_rows ? x_rows[slot] : slot) * x.stride + k0 : nullptr;
  }
  __syncthreads();
  StageLoader<D> loader;
  loader.load(x_src, 0, K);
  loader.store(stages[0]);
  __syncthreads();

  float acc[kMi][kNi][4] = {};
  const int n_stages = (n_slices + kAhead - 1) / kAhead;
  for (int st = 0; st < n_stages; ++st) {
    if (st + 1 < n_stages) loader.load(x_src, int64_t(st + 1) * kStageCols, K);
    const Stage& stage = stages[st % 2];
    const float w_scale = kFp8 ? scales[(k0 + int64_t(st) * kStageCols) / w.block_in] : 1.0f;
    float sums[kMi][kNi][4] = {};  // the stage's, before its scales
#pragma unroll
    for (int u = 0; u < kAhead; ++u) {
      const int s = st * kAhead + u;
      if (s >= n_slices) break;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int c = u * kSliceCols + 16 * t + 4 * j;
        uint32_t high[kMi][4], low[kMi][4];
#pragma unroll
        for (int mi = 0; mi < kMi; ++mi) {
          const uint2 h0 = *reinterpret_cast<const uint2*>(&stage.high[mi * 16 + g][c]);
          const uint2 h1 = *reinterpret_cast<const uint2*>(&stage.high[mi * 16 + g + 8][c]);
          const uint2 l0 = *reinterpret_cast<const uint2*>(&stage.low[mi * 16 + g][c]);
          const uint2 l1 = *reinterpret_cast<const uint2*>(&stage.low[mi * 16 + g + 8][c]);
          high[mi][0] = h0.x, high[mi][1] = h1.x, high[mi][2] = h0.y, high[mi][3] = h1.y;
          low[mi][0] = l0.x, low[mi][1] = l1.x, low[mi][2] = l0.y, low[mi][3] = l1.y;
        }
#pragma unroll
        for (int i = 0; i < kNi; ++i) {
          uint32_t b0, b1;
          b_fragment(ahead[u], i, j, b0, b1);
#pragma unroll
          for (int mi = 0; mi < kMi; ++mi) mma<D>(sums[mi][i], high[mi], b0, b1), mma<D>(sums[mi][i], low[mi], b0, b1);
        }
      }
      if (s + kAhead < n_slices) ask(ahead[u], w_rows, s + kAhead);
    }
#pragma unroll
    for (int mi = 0; mi < kMi; ++mi) {
      const float top = kFp8 ? w_scale * stage.unscale[mi * 16 + g] : 1.0f;
      const float bottom = kFp8 ? w_scale * stage.unscale[mi * 16 + g + 8] : 1.0f;
#pragma unroll
      for (int i = 0; i < kNi; ++i) {
        acc[mi][i][0] = fmaf(top, sums[mi][i][0], acc[mi][i][0]), acc[mi][i][1] = fmaf(top, sums[mi][i][1], acc[mi][i][1]);
        acc[mi][i][2] = fmaf(bottom, sums[mi][i][2], acc[mi][i][2]);
        acc[mi][i][3] = fmaf(bottom, sums[mi][i][3], acc[mi][i][3]);
      }
    }
    if (st + 1 < n_stages) loader.store(stages[(st + 1) % 2]);
    __syncthreads();
  }

  if constexpr (kGateUp) {
    store_gate_up(acc, rows, n0, N, reinterpret_cast<float*>(shared_memory), y);
  } else {
#pragma unroll
    for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int64_t row = rows.begin + mi * 16 + g + half * 8;
        if (row >= rows.end) continue;
        float* out = y.data + row * y.stride;
#pragma unroll
        for (int i = 0; i < kNi; ++i) {
          const int64_t col = warp_n0 + i * 8 + 2 * t;
          if (gridDim.z > 1) {
            if (col < N) atomicAdd(&out[col], acc[mi][i][2 * half]);
            if (col + 1 < N) atomicAdd(&out[col + 1], acc[mi][i][2 * half + 1]);
          } else {
            if (col < N) out[col] = acc[mi][i][2 * half];
            if (col + 1 < N) out[col + 1] = acc[mi][i][2 * half + 1];
          }
        }
      }
  }
}

// K in `splits` blocks of whole stages (y zeroed first where more than one).
template <DType D, bool kGateUp>
void launch(const DeviceWeight& shape, int splits, cudaStream_t stream, const GroupedWeights& weights,
            const int32_t* offsets, int n_groups, DeviceMatrix x, const int32_t* x_rows, DeviceMatrix y) {
  static_assert(kBM * (kBN + 4) * sizeof(float) <= 2 * sizeof(Stage), "gate_up's tile fits in the stages");
  constexpr int kCols = kOutCols<kGateUp>;
  const int64_t stages = (shape.cols + kStageCols - 1) / kStageCols;
  const int64_t k_chunk = (stages + splits - 1) / splits * kStageCols;
  const dim3 grid(unsigned((shape.rows + kCols - 1) / kCols), unsigned(grouped_row_tiles(y.rows, n_groups, kBM)),
                  unsigned((shape.cols + k_chunk - 1) / k_chunk));
  if (grid.z > 1)
    DSV3_CUDA_CHECK(cudaMemset2DAsync(y.data, size_t(y.stride) * sizeof(float), 0, size_t(y.cols) * sizeof(float),
                                      size_t(y.rows), stream));
  launch_chained(grouped_few_kernel<D, kGateUp>, grid, kThreads, 2 * sizeof(Stage), stream, weights, offsets, n_groups,
                 x, x_rows, y, k_chunk);
}

template <bool kGateUp>
void launch_of(DType dtype, const DeviceWeight& shape, int splits, cudaStream_t stream, const GroupedWeights& weights,
               const int32_t* offsets, int n_groups, DeviceMatrix x, const int32_t* x_rows, DeviceMatrix y) {
  if (dtype == DType::F8_E4M3)
    launch<DType::F8_E4M3, kGateUp>(shape, splits, stream, weights, offsets, n_groups, x, x_rows, y);
  else
    launch<DType::BF16, kGateUp>(shape, splits, stream, weights, offsets, n_groups, x, x_rows, y);
}

bool blocks_ok(const DeviceWeight& shape) {
  return shape.dtype != DType::F8_E4M3 || (shape.block_in % kStageCols == 0 && shape.block_out % kBN == 0);
}

}  // namespace

bool grouped_few_ok(const DeviceWeight& shape, int64_t rows, int n_groups) {
  return blocks_ok(shape) && (rows + n_groups - 1) / n_groups <= 2 * kBM;
}

void launch_grouped_few(const GroupedWeights& weights, const DeviceWeight& shape, const int32_t* offsets, int n_groups,
                        DeviceMatrix x, const int32_t* x_rows, DeviceMatrix y, bool gate_up, cudaStream_t stream) {
  (gate_up ? launch_of<true> : launch_of<false>)(shape.dtype, shape, 1, stream, weights, offsets, n_groups, x, x_rows,
                                                 y);
}

bool few_rows_ok(const DeviceWeight& w, DeviceMatrix x) {
  return grouped_linear_ok(w, x) && blocks_ok(w) && x.rows <= kFewRows;
}

void launch_few_rows(const DeviceWeight& w, DeviceMatrix x, DeviceMatrix y, int sm_count, cudaStream_t stream) {
  // Splits of K enough for kBlocksPerSm blocks on every SM, each at least two stages where K has them.
  const int64_t tiles = (w.rows + kBN - 1) / kBN * ((x.rows + kBM - 1) / kBM);
  const int64_t stages = (w.cols + kStageCols - 1) / kStageCols;
  const int64_t wanted = (int64_t(kBlocksPerSm) * sm_count + tiles - 1) / tiles;
  const int splits = int(std::max<int64_t>(1, std::min(wanted, stages / 2)));
  launch_of<false>(w.dtype, w, splits, stream, {nullptr, 0, 0, w}, nullptr, 1, x, nullptr, y);
}

}  // namespace dsv3::cuda
