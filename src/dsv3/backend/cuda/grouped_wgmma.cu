// Grouped products for groups of many rows on Hopper's warpgroup tensor cores (wgmma.cuh): the
// experts of a prefill batch (Moonlight at 1K tokens: 96 rows an expert on average, 64 experts, top 6).
//
// Counting first (Moonlight, 1K tokens, a MoE layer): gate, up and down over the routed pairs are
// 106 GFLOP and 553 MB of FP8 expert weights read once: 0.13 ms at the H100's measured 808 TFLOP/s,
// 0.18 ms at its 3.1 TB/s. grouped_gemm.cu's mma.sync kernel, both operands through shared memory,
// x in two BF16 parts, ran them in 1.35 ms (79 TFLOP/s), bound by its shared-memory pipe.
//
// Roles. y^T = W x^T: the weight's rows are wgmma's M (64 a warpgroup, kBM = 128 a block: one FP8
// scale block), a tile's kBN rows of x its N. A, the weight, comes from registers: each lane loads its
// own fragment bytes from memory, 32 bytes of a row a stage, FP8 codes widened to FP16 exactly (one
// conversion a pair), BF16 as stored. B, x, comes from shared memory in the 128-byte swizzle,
// copied there with cp.async two stages ahead. No weight byte goes through shared memory. A gate_up
// launch (an FFN's first half) multiplies the gate and the up weight in its two warpgroups and
// writes silu(gate) * up.
//
// x's parts. A first pass (parts_kernel) writes every row of x once, in the order below. Against FP8
// weights, as one FP16 part after a power of two a row that brings its largest magnitude into
// [2^14, 2^15) (fp16_parts.cuh): 11 bits of mantissa over FP16's 29 binades below that, so that a
// row's outliers cost its small values nothing; 2^-12 an element on average, 8 times finer than BF16
// activations, against the FP8 weight exactly. Against BF16 weights, as two BF16 parts, x = high +
// low, both multiplied into the float32 sums: float32 accuracy, as the other products of BF16 weights.
//
// K order. A sum over k does not care which column is called which. Lane (g, t) holds A's logical
// columns 2t, 2t+1, 2t+8, 2t+9 of each k16 step (mma.cuh); step s of a 128-column stage takes the
// lane's physical columns 32t + 4s .. 32t + 4s + 3 as those four, so that the lane reads its stage of
// a row as one 32-byte run. parts_kernel writes x's columns in that logical order (logical_column).
//
// FP8 scales. A 128-column stage of the block's 128 rows lies in one scale block: each stage's
// products go into fresh sums, multiplied once by that scale and added to the totals, as DeepSeek's
// own FP8 GEMM promotes its sums every 128 columns.
//
// Versions (H100, Moonlight FP8, `dsv3 bench --ops`, the experts of 1024 / 8192 tokens, side by side
// with the mma.sync kernel's 1.35 / 8.45 ms; bench/RESULTS.md): x in two FP16 parts, separate gate and
// up launches 0.806 / 4.87 ms; gate_up in one launch 0.779 / 4.78; a stage's operand descriptors and
// copy sources worked out once, not each stage 0.739 / 4.56; x in one FP16 part 0.529 / 3.24; the
// epilogue through shared memory in whole rows of y 0.483 / 3.08 (it had been 31% of gate_up's warp
// samples: the up half passed to the gate half with 4-way bank conflicts, then stored a float at a
// time by half the warps, silu's IEEE division calling its slow path). Tried and dropped: the next
// stage's fragments made while a stage's products run (no faster), the weights two stages ahead in
// registers (6% slower), the weights through shared memory by cp.async in a ring of four (16%
// slower), the block scale in A so that two groups of products stay in flight (1-2%; BF16 5% slower),
// two sets of 64 rows a warpgroup (8K 1.04x, 1K 0.98x). Where it stands (Nsight Compute, gate_up at
// 1K tokens): L2 at 5.5 TB/s, the tensor pipe 37% busy, DRAM 1.4 TB/s; none of them at its limit.
#include <cuda_bf16.h>

#include "dsv3/backend/cuda/copy_async.cuh"
#include "dsv3/backend/cuda/cuda_check.h"
#include "dsv3/backend/cuda/fp16_parts.cuh"
#include "dsv3/backend/cuda/grouped_tile.cuh"
#include "dsv3/backend/cuda/grouped_wgmma.h"
#include "dsv3/backend/cuda/mma.cuh"
#include "dsv3/backend/cuda/silu.cuh"
#include "dsv3/backend/cuda/weight_element.cuh"
#include "dsv3/backend/cuda/wgmma.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kWarpgroups = 2, kThreads = 128 * kWarpgroups;
constexpr int kBM = 64 * kWarpgroups;  // weight rows (columns of y) a block
constexpr int kBN = 128;               // rows of x (of y) a tile: wgmma's N
constexpr int kStageCols = 128;        // k a stage: one FP8 scale block
constexpr int kSteps = kStageCols / 16;
constexpr int kRing = 3;  // stages of x in shared memory: one multiplied, two being copied
// x's parts: one (FP16) against FP8 weights, two (BF16) against BF16 ones (the file's header).
__host__ __device__ constexpr int parts_of(DType d) { return d == DType::F8_E4M3 ? 1 : 2; }
// A stage's part in shared memory: two 64-column swizzle atoms, kBN rows of 128 bytes each.
constexpr int kAtomBytes = kBN * 128, kPartBytes = 2 * kAtomBytes;
__host__ __device__ constexpr int stage_bytes(DType d) { return parts_of(d) * kPartBytes; }
constexpr size_t shared_bytes(DType d) { return size_t(kRing) * stage_bytes(d) + 1024; }  // and room to align to 1024

// Where physical column p of a stage goes in the logical order (the file's header).
__device__ inline int logical_column(int p) {
  const int t = p / 32, s = p % 32 / 4, j = p % 4;
  return 16 * s + 2 * t + (j < 2 ? j : 8 + j - 2);
}

// One warp a row: x's row r in the logical order, as FP16 (high [rows, K]) at a power of two whose
// inverse goes to unscale[r], or as two BF16 parts (high and low [rows, K], unscaled).
template <bool kFp16>
__global__ void __launch_bounds__(128) parts_kernel(DeviceMatrix x, uint16_t* high, uint16_t* low, float* unscale) {
  const int64_t r = int64_t(blockIdx.x) * 4 + threadIdx.x / 32;
  if (r >= x.rows) return;
  const int lane = threadIdx.x % 32;
  const float* row = x.data + r * x.stride;
  float scale = 1.0f;
  if constexpr (kFp16) {
    float m = 0.0f;
    for (int64_t c = 4 * lane; c < x.cols; c += 128) {
      const float4 v = *reinterpret_cast<const float4*>(row + c);
      m = fmaxf(m, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
    }
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    const int e = scale_exponent(__float_as_uint(m));
    scale = power_of_two(e);
    if (lane == 0) unscale[r] = power_of_two(-e);
  }
  // Lane l's four columns 4l..4l+3 of a stage: two logical pairs, 8 columns apart.
  const int first = logical_column(4 * lane);
  for (int64_t c0 = 0; c0 < x.cols; c0 += kStageCols) {
    const float4 v = *reinterpret_cast<const float4*>(row + c0 + 4 * lane);
    const int64_t at = r * x.cols + c0 + first;
    if constexpr (kFp16) {
      *reinterpret_cast<__half2*>(high + at) = __floats2half2_rn(v.x * scale, v.y * scale);
      *reinterpret_cast<__half2*>(high + at + 8) = __floats2half2_rn(v.z * scale, v.w * scale);
    } else {
      uint32_t h0, l0, h1, l1;
      split_bf16(v.x, v.y, h0, l0), split_bf16(v.z, v.w, h1, l1);
      *reinterpret_cast<uint32_t*>(high + at) = h0, *reinterpret_cast<uint32_t*>(high + at + 8) = h1;
      *reinterpret_cast<uint32_t*>(low + at) = l0, *reinterpret_cast<uint32_t*>(low + at + 8) = l1;
    }
  }
}

// A lane's weights of one stage: 32 columns of rows g and g + 8 of its warp's 16.
template <DType D>
struct StageWeights {
  static constexpr int kBytes = D == DType::F8_E4M3 ? 1 : 2;
  static constexpr int kVectors = 32 * kBytes / 16;  // a row's
  uint4 v[2][kVectors];

  __device__ void load(const uint8_t* const (&rows)[2], int stage) {
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int i = 0; i < kVectors; ++i)
        v[h][i] = load_weight_vector(rows[h] + int64_t(stage) * kStageCols * kBytes + 16 * i);
  }

  // The stage's rows asked of L2 ahead of load(), which will find them there.
  __device__ void prefetch(const uint8_t* const (&rows)[2], int stage) const {
#pragma unroll
    for (int h = 0; h < 2; ++h)
      asm volatile("prefetch.global.L2 [%0];" ::"l"(rows[h] + (int64_t(stage) * kStageCols) * kBytes));
  }

  // A's fragment of step s: columns 4s .. 4s + 3 of the lane's 32, as logical (2t, 2t+1) and (2t+8, 2t+9).
  __device__ __forceinline__ void fragment(int s, uint32_t (&a)[4]) const {
    if constexpr (D == DType::F8_E4M3) {
      const uint32_t top = vector_word(v[0][s / 4], s % 4), bottom = vector_word(v[1][s / 4], s % 4);
      a[0] = f16x2_of_e4m3x2(top & 0xffffu), a[1] = f16x2_of_e4m3x2(bottom & 0xffffu);
      a[2] = f16x2_of_e4m3x2(top >> 16), a[3] = f16x2_of_e4m3x2(bottom >> 16);
    } else {
      a[0] = vector_word(v[0][s / 2], 2 * s % 4), a[1] = vector_word(v[1][s / 2], 2 * s % 4);
      a[2] = vector_word(v[0][s / 2], 2 * s % 4 + 1), a[3] = vector_word(v[1][s / 2], 2 * s % 4 + 1);
    }
  }
};

template <DType D>
__device__ __forceinline__ void product(float (&d)[64], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  if constexpr (D == DType::F8_E4M3)
    wgmma_m64n128k16_f16(d, a, b, accumulate);
  else
    wgmma_m64n128k16_bf16(d, a, b, accumulate);
}

// d (+)= the stage's products, of each part of x: the lane's A fragments a, x's stage in shared memory
// (its descriptor: the high part, then any low one, each two swizzle atoms). Returns once the tensor
// cores are done with them.
template <DType D>
__device__ __forceinline__ void multiply_stage(float (&d)[64], uint32_t (&a)[kSteps][4], uint64_t stage,
                                               bool overwrite) {
#pragma unroll
  for (int i = 0; i < 64; ++i) hold(d[i]);
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    const uint32_t at = s / 4 * kAtomBytes + 32 * (s % 4);
    product<D>(d, a[s], operand_at(stage, at), overwrite && s == 0 ? 0 : 1);
    if constexpr (parts_of(D) == 2) product<D>(d, a[s], operand_at(stage, kPartBytes + at), 1);
  }
  wgmma_commit();
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < 64; ++i) hold(d[i]);
#pragma unroll
  for (int s = 0; s < kSteps; ++s)
#pragma unroll
    for (int i = 0; i < 4; ++i) hold(a[s][i]);
}

// grid (column tiles, row tiles of kBN the groups could need). A product's column tiles are kBM
// wide, warpgroup wg computing columns [n0 + 64 wg, n0 + 64 wg + 64) of the tile's rows of y. A
// gate_up launch's are 64 wide: warpgroup 0 multiplies by the group's gate weight (`index` in the
// table) and 1 by its up weight (the next), and y = silu(gate) * up.
template <DType D, bool kGateUp>
__global__ void __launch_bounds__(kThreads, 1)
    grouped_wgmma_kernel(GroupedWeights weights, const int32_t* offsets, int n_groups, GroupedParts x,
                         const int32_t* x_rows, DeviceMatrix y) {
  constexpr bool kFp8 = D == DType::F8_E4M3;
  extern __shared__ uint8_t shared_raw[];
  uint8_t* ring = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(shared_raw) + 1023) / 1024 * 1024);
  __shared__ int64_t row_start[kBN];  // where row r of the tile starts in x's parts, -1 past the group
  __shared__ float row_unscale[kBN];
  const TileRows rows = find_tile<kBN>(offsets, n_groups, y.rows, int(blockIdx.y));
  if (rows.group < 0) return;
  const int tid = threadIdx.x, lane = tid % 32, wg = tid / 128, warp = tid / 32 % 4, g = lane / 4, t = lane % 4;
  const int index = weights.index + (kGateUp ? wg : 0);
  const DeviceWeight w = weights.table ? weights.table[int64_t(rows.group) * weights.stride + index] : weights.one;
  const int64_t K = w.cols, N = w.rows, n0 = int64_t(blockIdx.x) * (kGateUp ? 64 : kBM);
  const int64_t wg_n0 = n0 + (kGateUp ? 0 : 64 * wg);  // the warpgroup's first column

  if (tid < kBN) {
    const int64_t slot = rows.begin + tid;
    const int64_t r = slot < rows.end ? int64_t(x_rows ? x_rows[slot] : slot) : -1;
    row_start[tid] = r < 0 ? -1 : r * K;
    row_unscale[tid] = kFp8 && r >= 0 ? x.unscale[r] : 1.0f;
  }
  __syncthreads();

  // The copies of a stage: each part's kBN rows x 16 pieces of 16 bytes, piece p of row r to its
  // swizzled place. A thread copies one piece of rows tid / 16 + 16 i, which share r % 8; rows past
  // the group copy nothing (a zero-filled piece) from row 0.
  constexpr int kCopyRows = kBN / 16;
  const int piece = tid % 16, first_row = tid / 16;
  const uint32_t ring_address = static_cast<uint32_t>(__cvta_generic_to_shared(ring)) + piece / 8 * kAtomBytes +
                                first_row * 128 + ((piece % 8) ^ (first_row % 8)) * 16;
  const uint16_t* copy_rows[kCopyRows];
  uint32_t rows_in_group = 0;  // bit i: the thread's row i is one of the group's
#pragma unroll
  for (int i = 0; i < kCopyRows; ++i) {
    const int64_t start = row_start[first_row + 16 * i];
    copy_rows[i] = x.high + (start < 0 ? 0 : start) + 8 * piece;
    rows_in_group |= start < 0 ? 0u : 1u << i;
  }
  const int64_t low_offset = parts_of(D) == 2 ? x.low - x.high : 0;
  auto copy_stage = [&](int stage) {
    const uint32_t base = ring_address + (stage % kRing) * stage_bytes(D);
    const int64_t column = int64_t(stage) * kStageCols;
#pragma unroll
    for (int i = 0; i < kCopyRows; ++i) {
      const uint16_t* src = copy_rows[i] + column;
      const bool valid = rows_in_group >> i & 1;
      copy_async16(base + i * 16 * 128, src, valid);
      if constexpr (parts_of(D) == 2) copy_async16(base + kPartBytes + i * 16 * 128, src + low_offset, valid);
    }
  };

  const uint8_t* w_rows[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t n = min(wg_n0 + 16 * warp + g + 8 * h, N - 1);  // rows past N read the last, not stored
    w_rows[h] = static_cast<const uint8_t*>(w.data) + (n * K + 32 * t) * StageWeights<D>::kBytes;
  }
  const float* scales = kFp8 ? w.scale_inv + n0 / w.block_out * ((K + w.block_in - 1) / w.block_in) : nullptr;
  const unsigned stages_a_scale = kFp8 ? unsigned(w.block_in / kStageCols) : 1;  // grouped_wgmma_ok: a multiple

  const int n_stages = int(K / kStageCols);
#pragma unroll
  for (int s = 0; s < kRing - 1; ++s) {
    if (s < n_stages) copy_stage(s);
    copy_async_commit();
  }
  // A lane's weights of the stage being multiplied; the next stage's are asked for once its fragments
  // are made (the registers they free), and the one after that from L2.
  StageWeights<D> weights_now;
  weights_now.load(w_rows, 0);
  if (n_stages > 1) weights_now.prefetch(w_rows, 1);
  float w_scale = kFp8 ? scales[0] : 1.0f;

  const uint64_t ring_operand = swizzled_operand(ring);
  float acc[64] = {}, sums[64];
  for (int st = 0; st < n_stages; ++st) {
    copy_async_wait<kRing - 2>();  // this thread's copies of stage st are done
    fence_async_shared();
    __syncthreads();  // everyone's are, and every product of stage st - 1 is done with its slot
    if (st + kRing - 1 < n_stages) copy_stage(st + kRing - 1);
    copy_async_commit();

    uint32_t a[kSteps][4];
#pragma unroll
    for (int s = 0; s < kSteps; ++s) weights_now.fragment(s, a[s]);
    float next_scale = w_scale;
    if (st + 1 < n_stages) {
      weights_now.load(w_rows, st + 1);
      if (st + 2 < n_stages) weights_now.prefetch(w_rows, st + 2);
      if constexpr (kFp8) next_scale = scales[unsigned(st + 1) / stages_a_scale];
    }
    const uint64_t stage = operand_at(ring_operand, (st % kRing) * stage_bytes(D));
    if constexpr (kFp8) {
      multiply_stage<D>(sums, a, stage, true);
#pragma unroll
      for (int i = 0; i < 64; ++i) acc[i] = fmaf(w_scale, sums[i], acc[i]);
    } else {
      multiply_stage<D>(acc, a, stage, false);
    }
    w_scale = next_scale;
  }

  // D[feature][row] to y[row][feature] through shared memory (the ring, free once both warpgroups'
  // products are done), so that a warp stores whole rows of y: tile[r][c] for the block's columns c (a
  // gate_up launch's gate, then its up a tile further), each row brought back by its inverse power of
  // two. Rows kLd = columns + 4 apart: a fragment register's 32 lanes (rows 8j + 2t + c, columns
  // 16 warp + g + 8h) store to 32 different banks.
  constexpr int kCols = kGateUp ? 64 : kBM, kLd = kCols + 4, kTile = kBN * kLd;
  static_assert(kRing * stage_bytes(D) >= (kGateUp ? 2 : 1) * kTile * int(sizeof(float)));
  float* tile = reinterpret_cast<float*>(ring);
  float* mine = tile + (kGateUp ? wg * kTile : 64 * wg);
  __syncthreads();
#pragma unroll
  for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
    for (int c = 0; c < 2; ++c)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = 8 * j + 2 * t + c, f = 16 * warp + g + 8 * h;
        mine[r * kLd + f] = acc[4 * j + 2 * h + c] * row_unscale[r];
      }
  __syncthreads();
  for (int r = tid / 32; r < kBN && rows.begin + r < rows.end; r += kThreads / 32) {
    float* out = y.data + (rows.begin + r) * y.stride + n0;
    const float* in = tile + r * kLd;
#pragma unroll
    for (int i = 0; i < kCols / 32; ++i) {
      const int c = lane + 32 * i;
      if (n0 + c < N) out[c] = kGateUp ? silu(in[c]) * in[kTile + c] : in[c];
    }
  }
}

template <DType D, bool kGateUp>
void launch(const DeviceWeight& shape, cudaStream_t stream, const GroupedWeights& weights, const int32_t* offsets,
            int n_groups, GroupedParts parts, const int32_t* x_rows, DeviceMatrix y) {
  static const bool configured = [] {
    DSV3_CUDA_CHECK(cudaFuncSetAttribute(grouped_wgmma_kernel<D, kGateUp>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes(D))));
    return true;
  }();
  (void)configured;
  const int64_t tile_cols = kGateUp ? 64 : kBM;
  const dim3 grid(unsigned((shape.rows + tile_cols - 1) / tile_cols),
                  unsigned(grouped_row_tiles(y.rows, n_groups, kBN)));
  grouped_wgmma_kernel<D, kGateUp><<<grid, kThreads, shared_bytes(D), stream>>>(weights, offsets, n_groups, parts,
                                                                                x_rows, y);
}

// x's parts in scratch: high, then any low part, then FP16's unscale (4-byte aligned: K is a
// multiple of 128).
GroupedParts parts_in(void* scratch, DType weights, DeviceMatrix x) {
  auto* high = static_cast<uint16_t*>(scratch);
  const int64_t part = x.rows * x.cols, n_parts = parts_of(weights);
  return {high, n_parts == 2 ? high + part : nullptr, reinterpret_cast<float*>(high + n_parts * part)};
}

}  // namespace

bool grouped_wgmma_ok(const DeviceWeight& shape) {
  if (shape.cols % kStageCols != 0) return false;
  if (shape.dtype == DType::BF16) return true;
  return shape.dtype == DType::F8_E4M3 && shape.block_in % kStageCols == 0 && shape.block_out % kBM == 0;
}

size_t grouped_wgmma_scratch_bytes(const DeviceWeight& shape, DeviceMatrix x) {
  return size_t(x.rows) * (size_t(parts_of(shape.dtype)) * 2 * size_t(x.cols) + 4);
}

void launch_grouped_wgmma(const GroupedWeights& weights, const DeviceWeight& shape, const int32_t* offsets,
                          int n_groups, DeviceMatrix x, const int32_t* x_rows, DeviceMatrix y, bool gate_up,
                          void* scratch, cudaStream_t stream) {
  const GroupedParts parts = parts_in(scratch, shape.dtype, x);
  const unsigned part_blocks = unsigned((x.rows + 3) / 4);
  if (shape.dtype == DType::F8_E4M3) {
    parts_kernel<true><<<part_blocks, 128, 0, stream>>>(x, parts.high, parts.low, parts.unscale);
    (gate_up ? launch<DType::F8_E4M3, true> : launch<DType::F8_E4M3, false>)(shape, stream, weights, offsets,
                                                                               n_groups, parts, x_rows, y);
  } else {
    parts_kernel<false><<<part_blocks, 128, 0, stream>>>(x, parts.high, parts.low, parts.unscale);
    (gate_up ? launch<DType::BF16, true> : launch<DType::BF16, false>)(shape, stream, weights, offsets, n_groups,
                                                                        parts, x_rows, y);
  }
}

}  // namespace dsv3::cuda
