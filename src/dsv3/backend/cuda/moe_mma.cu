// The experts' products for decode-sized batches of FP8 weights on tensor cores: a warp multiplies a
// 16-row tile of an FFN's weights into up to 8 tokens with mma.sync m16n8k16 (mma.cuh), reading each
// weight byte from memory once. moe.cu's CUDA-core kernels take the other dtypes and shapes.
//
// Why tensor cores for a product that only reads weights: widening FP8 to float32 on CUDA cores
// takes three conversions per two weights (e4m3x2 -> f16x2 -> two f32) and a multiply-add a weight.
// Here the codes are widened to FP16 exactly, one conversion per two weights, and a warp's mma takes
// 256 of them at once, so a lane's work between its loads shrinks and more of them can be in flight.
// Both kinds of kernel wait on memory, not on their instructions (Nsight Compute: 27-31% of issue
// slots used), and this one gives Moonlight's FP8 batch-1 decode 4% (bench/RESULTS.md). BF16 weights
// need no widening, and their CUDA-core kernels are as fast.
//
// Operands. Lane (g, t) = (lane / 4, lane % 4) loads 32 bytes of the tile's rows g and g + 8 at each
// chunk of 128 columns: elements [32 t, 32 t + 32) of the chunk, so that a row's four lanes read one
// 128-byte line (64 bytes a row, half a line, ran 8% slower end to end). A sum over k does not care
// which column is called which, so step j of a chunk takes physical columns 32 t + 4j .. 32 t + 4j + 3
// as mma's logical columns (2t, 2t+1, 2t+8, 2t+9), in A and B alike. x is scaled per token by a power
// of two (exact) that brings its largest magnitude into [2^14, 2^15), inside FP16's range, and split
// as x = high + low in FP16 (22 bits of mantissa); both parts are multiplied into float32 sums. A pass
// stages its tokens' parts once in shared memory. Each chunk lies in one 128-column scale block: it is
// summed alone, then multiplied by its rows' scales.
#include <cuda_fp16.h>

#include <algorithm>

#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/fp16_parts.cuh"
#include "dsv3/backend/cuda/mma.cuh"
#include "dsv3/backend/cuda/moe_mma.h"
#include "dsv3/backend/cuda/moe_passes.cuh"
#include "dsv3/backend/cuda/route_token.cuh"
#include "dsv3/backend/cuda/silu.cuh"
#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::cuda {
namespace {

// Measured on Moonlight FP8, batch-1 decode on an H200 (bench/RESULTS.md): 4 warps a block, 2
// chunks in flight a lane and about 1024 warps in all beat 2 or 8 warps, 3 chunks, 512, 768 or 2048.
// Since then, on an H100, a lone token's launches at 3 chunks and 168 registers a thread (3 blocks,
// 12 warps an SM, where its gate_up places some 11) ran batch-1 decode 2.2-2.5% faster than at 2
// chunks and 128 registers (4 blocks); 4 chunks spill at either. The chunks land in registers: a
// shared-memory ring of cp.async copies, 3 to 6 chunks a lane in flight, ran batch-1 decode 14-16%
// slower (340 against 396 tok/s), and one of bulk copies (the Tensor Memory Accelerator's
// cp.async.bulk, a copy a row of 128-512 bytes, 2 to 6 slots a warp) 333-400 against 402. Bytes in
// flight are not what these kernels wait on: with 2-3 warps a scheduler, they wait on the
// latencies of their own instructions (Nsight Compute).
constexpr int kWarps = 4;
constexpr int kMaxPassTokens = 8;  // B's columns
// Chunks a lane has asked for before it multiplies the first, and resident blocks an SM (the
// registers a thread that leaves): for a lone token's launches, and for the others'.
constexpr int kLoneAhead = 3, kLoneMinBlocks = 3;  // 168 registers
constexpr int kAhead = 2, kMinBlocks = 4;          // 128 registers
constexpr int64_t kTargetWarps = 1024;
// Staged tokens of a pass: at most this many bytes of shared memory (DeepSeek-V3's 7168 columns: 3
// tokens a pass; Moonlight's 2048: 8).
constexpr size_t kMaxStageBytes = 96 * 1024;

// A tile's rows: 8 of the gate and the same 8 of the up projection (gate_up: rows g + 8 of the
// product are the up rows, so a lane holds both halves of its hidden values), or 16 of down.
constexpr int kGateTileRows = 8, kDownTileRows = 16;

constexpr int kLaneCols = 32;              // a lane's columns of a row in a chunk: 32 bytes
constexpr int kChunkCols = 4 * kLaneCols;  // a chunk: 128 columns, one line of each row
constexpr int kSteps = kLaneCols / 4;      // mma steps of a chunk

// The staged row stride in 16-byte groups (4 columns' high and low parts), one past a multiple of 8
// so that the rows of a step's lanes fall in distinct banks. (The four lanes t of a row still share
// theirs; a swizzle that parted them, with its extra index arithmetic, ran 7% slower end to end.)
__host__ __device__ inline int stage_stride(int64_t cols) { return int((cols / 4 + 7) / 8 * 8 + 1); }

// Word i of the lane's 32 bytes of a row.
__device__ __forceinline__ uint32_t lane_word(const uint4 (&v)[2], int i) { return vector_word(v[i / 4], i % 4); }

// Step j's A fragment from the lane's 32 bytes of rows g (top) and g + 8 (bottom).
__device__ __forceinline__ void a_fragment(uint32_t (&a)[4], const uint4 (&top)[2], const uint4 (&bottom)[2], int j) {
  const uint32_t t = lane_word(top, j), b = lane_word(bottom, j);
  a[0] = f16x2_of_e4m3x2(t & 0xffffu), a[1] = f16x2_of_e4m3x2(b & 0xffffu);
  a[2] = f16x2_of_e4m3x2(t >> 16), a[3] = f16x2_of_e4m3x2(b >> 16);
}

// The pass's tokens, src(t) for t < n, each `cols` floats, scaled and split into xs (stage_stride
// groups a row); max_bits[t] keeps each token's largest magnitude. Every thread of the block calls it.
// The rows are read through L2 (`__ldcg`), so that a kernel may stage them before its wait where the
// kernel two launches ahead wrote them (chained_launch.cuh).
// A group's 4 floats take the 16 bytes of its 4 columns' parts: they wait there, as read, for the
// scale, and the thread that read them splits them in place, not reading them again from L2
// (Moonlight FP8 decode on an H200: batch 1 406.6 -> 408.9 tok/s, batch 16 1023.9 -> 1085.7).
template <typename Source>
__device__ void stage_tokens(Source src, int n, int64_t cols, uint4* xs, unsigned* max_bits) {
  const int groups = int(cols / 4), rs = stage_stride(cols);
  __syncthreads();  // the previous pass has read xs and max_bits
  if (threadIdx.x < kMaxPassTokens) max_bits[threadIdx.x] = 0;
  __syncthreads();
  // A thread asks for kInFlight groups of a row before it stores any: one at a time, each waited out
  // an L2 round trip (Nsight Compute: Moonlight's 2048 columns were four in a row over 128 threads,
  // a lone token's down its 1408 three, after its wait).
  constexpr int kInFlight = 4;
  for (int t = 0; t < n; ++t) {
    const float4* row = reinterpret_cast<const float4*>(src(t));
    float m = 0.0f;
    for (int q0 = threadIdx.x; q0 < groups; q0 += kInFlight * blockDim.x) {
      float4 v[kInFlight];
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) {
        const int q = q0 + u * int(blockDim.x);
        v[u] = q < groups ? __ldcg(row + q) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) {
        const int q = q0 + u * int(blockDim.x);
        if (q < groups) reinterpret_cast<float4*>(xs)[t * rs + q] = v[u];
        m = fmaxf(m, fmaxf(fmaxf(fabsf(v[u].x), fabsf(v[u].y)), fmaxf(fabsf(v[u].z), fabsf(v[u].w))));
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    if (threadIdx.x % 32 == 0) atomicMax(&max_bits[t], __float_as_uint(m));  // non-negative: ordered as unsigned
  }
  __syncthreads();
  for (int t = 0; t < n; ++t) {
    const float scale = power_of_two(scale_exponent(max_bits[t]));
    for (int q = threadIdx.x; q < groups; q += blockDim.x) {
      const float4 v = reinterpret_cast<const float4*>(xs)[t * rs + q];
      const float x[4] = {v.x * scale, v.y * scale, v.z * scale, v.w * scale};
      uint4 parts;
      split_f16(x[0], x[1], parts.x, parts.z), split_f16(x[2], x[3], parts.y, parts.w);
      xs[t * rs + q] = parts;
    }
  }
  __syncthreads();
}

// A lane's two weight rows (and, for FP8, the scale rows of their blocks).
struct LanePair {
  const uint8_t *top, *bottom;
  const float *top_scales, *bottom_scales;
};

__device__ inline LanePair lane_pair(const DeviceWeight& wt, int64_t row_top, const DeviceWeight& wb,
                                     int64_t row_bottom) {
  return {static_cast<const uint8_t*>(wt.data) + row_top * wt.cols,
          static_cast<const uint8_t*>(wb.data) + row_bottom * wb.cols,
          wt.scale_inv + row_top / wt.block_out * ((wt.cols + wt.block_in - 1) / wt.block_in),
          wb.scale_inv + row_bottom / wb.block_out * ((wb.cols + wb.block_in - 1) / wb.block_in)};
}

// The chunks [begin, end) of a lane's two rows, kAhead of them asked for ahead of their products.
template <int kAhead>
struct TileStream {
  LanePair rows;
  int64_t cols, block_in;
  int begin, end;
  uint4 top[kAhead][2], bottom[kAhead][2];
  float top_scale[kAhead], bottom_scale[kAhead];

  // Chunk c into slot u: zeros past the part or the row (cols is a multiple of 16).
  __device__ __forceinline__ void ask(int u, int c) {
    const int64_t k = int64_t(c) * kChunkCols + kLaneCols * (threadIdx.x % 4);
#pragma unroll
    for (int v = 0; v < 2; ++v) {
      const int64_t kv = k + 16 * v;
      if (c < end && kv < cols) {
        top[u][v] = load_weight_vector(rows.top + kv);
        bottom[u][v] = load_weight_vector(rows.bottom + kv);
      } else {
        top[u][v] = bottom[u][v] = make_uint4(0, 0, 0, 0);
      }
    }
    const int64_t block = c < end ? int64_t(c) * kChunkCols / block_in : 0;
    top_scale[u] = __ldg(rows.top_scales + block), bottom_scale[u] = __ldg(rows.bottom_scales + block);
  }

  __device__ __forceinline__ void start() {
#pragma unroll
    for (int u = 0; u < kAhead; ++u) ask(u, begin + u);
  }

  // acc (this lane's D fragment) += the products of every chunk with the staged tokens xs, of which n
  // are real (the lanes of the others give B zeros). A chunk's 16 products go into two sums, of x's
  // high and low parts, so that each mma waits on the one two before it, not on the one just issued;
  // the lane's columns left in the row are counted once a chunk in 32 bits, where a 64-bit bound at
  // every step took three instructions (the two: Moonlight FP8 batch-1 decode on an H200, 402.4 ->
  // 407.4 tok/s).
  __device__ __forceinline__ void multiply(const uint4* xs, int rs, int n, float (&acc)[4]) {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    const uint4* x_row = xs + g * rs + kSteps * t;
#pragma unroll 1
    for (int c0 = begin; c0 < end; c0 += kAhead)
#pragma unroll
      for (int u = 0; u < kAhead; ++u) {
        const int c = c0 + u;
        if (c >= end) break;
        const int lane_cols = int(min(cols - (int64_t(c) * kChunkCols + kLaneCols * t), int64_t(kLaneCols)));
        float high[4] = {}, low[4] = {};
#pragma unroll
        for (int j = 0; j < kSteps; ++j) {
          uint32_t a[4];
          a_fragment(a, top[u], bottom[u], j);
          const uint4 b = g < n && 4 * j < lane_cols ? x_row[c * kLaneCols + j] : make_uint4(0, 0, 0, 0);
          mma_f16(high, a, b.x, b.y), mma_f16(low, a, b.z, b.w);
        }
        acc[0] = fmaf(top_scale[u], high[0] + low[0], acc[0]), acc[1] = fmaf(top_scale[u], high[1] + low[1], acc[1]);
        acc[2] = fmaf(bottom_scale[u], high[2] + low[2], acc[2]);
        acc[3] = fmaf(bottom_scale[u], high[3] + low[3], acc[3]);
        ask(u, c + kAhead);
      }
  }
};

// The parts of a tile (consecutive warps of the block, part 0 first) add up in part 0, which this
// returns true in. Every thread of the block calls it.
__device__ inline bool reduce_parts(float (&acc)[4], int part, int wpr) {
  if (wpr == 1) return true;
  __shared__ float partial[kWarps][4][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (part != 0)
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][i][lane] = acc[i];
  __syncthreads();
  if (part == 0)
    for (int p = 1; p < wpr; ++p)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i] += partial[warp + p][i][lane];
  return part == 0;
}

// This warp's tile of the block, its part of the columns' chunks, and the block's first row.
struct WarpShare {
  int tile, part, begin, end;
};

__device__ inline WarpShare warp_share(int wpr, int64_t cols, int chunk_cols) {
  const int warp = threadIdx.x / 32, part = warp % wpr;
  const int n_chunks = int((cols + chunk_cols - 1) / chunk_cols), per_part = (n_chunks + wpr - 1) / wpr;
  return {warp / wpr, part, part * per_part, min(n_chunks, (part + 1) * per_part)};
}

// A block's shared memory under LoneRouting, ahead of its staged tokens: warp 0's routing scratch,
// then the chosen ids (16-byte groups).
__host__ __device__ constexpr int lone_routing_groups(int n_experts, int top_k) {
  return int((route_warp_bytes(n_experts) + size_t(top_k) * sizeof(int32_t) + 15) / 16);
}

// Warp 0 reads the correction bias into its routing scratch (a weight: before the wait).
__device__ inline void preload_lone_bias(const LoneRouting& r, uint4* memory) {
  if (threadIdx.x < 32) preload_bias(r.bias, r.n_experts, route_scratch(reinterpret_cast<char*>(memory), r.n_experts, 0));
}

// The expert of this row of blocks (a routed one: blockIdx.y < top_k) under LoneRouting: warp 0
// routes the token from the gate's logits (its bias preloaded). With `writes` (gate_up), block (0, 0)
// writes the weights and the plan's pair_slot for the combine. Every thread of the block calls it.
__device__ inline int route_lone_token(const LoneRouting& r, uint4* memory, bool writes) {
  char* scratch_memory = reinterpret_cast<char*>(memory);
  int32_t* chosen = reinterpret_cast<int32_t*>(scratch_memory + route_warp_bytes(r.n_experts));
  writes = writes && blockIdx.x == 0 && blockIdx.y == 0;
  if (threadIdx.x < 32) {
    route_token(r.logits, r.n_experts, r.config, route_scratch(scratch_memory, r.n_experts, 0), chosen,
                writes ? r.weights : nullptr);
    if (writes)
      for (int k = int(threadIdx.x); k < r.config.top_k; k += 32) r.pair_slot[k] = k;
  }
  __syncthreads();
  return chosen[blockIdx.y];
}

// A lone token's slot under LoneRouting: choice y's is y, the shared FFN's top_k.
__device__ inline int lone_slot(const LoneRouting& r, bool shared_row) {
  return shared_row ? r.config.top_k : int(blockIdx.y);
}

// grid and passes as moe.cu's gate_up_kernel (moe_passes.cuh); a warp's tile is 8 rows of gate and
// up, a block kWarps / wpr tiles, a pass up to pass_tokens (<= 8) slots. kLoneToken: x is one token,
// which every active FFN takes once (a pass of one slot). kRoutes (a lone token): the routed blocks
// route it after their wait (LoneRouting), and the plan is not read.
template <int kAhead, int kMinBlocks, bool kLoneToken, bool kRoutes>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
    gate_up_mma_kernel(const DeviceWeight* ffns, int wpr, MoePlan plan, int n_ffns, int shared_parts, int pass_tokens,
                       DeviceMatrix x, float* hidden, int64_t hidden_stride, LoneRouting routing) {
  static_assert(kLoneToken || !kRoutes);
  extern __shared__ uint4 shared_memory[];
  uint4* xs = shared_memory + (kRoutes ? lone_routing_groups(routing.n_experts, routing.config.top_k) : 0);
  __shared__ unsigned max_bits[kMaxPassTokens];
  // A lone token is staged before the wait: the MoE's input was written by the launch before the
  // router's (its norm), and without the plan's slots to read, the block multiplies as soon as its
  // weights arrive. (Nsight Compute: the plan's slots and x's rows read after the wait held 11% of
  // gate_up's warp samples, a decode step's lone token on an H100.)
  if constexpr (kLoneToken) stage_tokens([&](int) { return x.data; }, 1, x.cols, xs, max_bits);
  // The shared FFN's blocks know their rows without the router's plan (block_passes reads none for
  // them): they ask for their first chunks before the wait.
  const bool early = int(blockIdx.y) >= int(gridDim.y) - shared_parts;
  if (kRoutes && !early) preload_lone_bias(routing, shared_memory);
  if (!early) wait_for_inputs();
  const int64_t block_rows = int64_t(kWarps / wpr) * kGateTileRows;
  const BlockPasses passes = kRoutes && !early ? BlockPasses{route_lone_token(routing, shared_memory, true), 0, 1, 0}
                                               : block_passes(plan, n_ffns, shared_parts, block_rows);
  const int e = passes.expert;
  if (e < 0) return;
  const DeviceWeight& gate = ffns[3 * e];
  const DeviceWeight& up = ffns[3 * e + 1];
  const int64_t width = gate.rows, block_row = passes.row_offset + blockIdx.x * block_rows;
  const WarpShare share = warp_share(wpr, gate.cols, kChunkCols);
  const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  const int64_t row0 = block_row + int64_t(share.tile) * kGateTileRows, row = min(row0 + g, width - 1);
  TileStream<kAhead> stream{lane_pair(gate, row, up, row), gate.cols, gate.block_in, share.begin, share.end};
  const bool busy = block_row < width;  // not past this FFN's width
  if (early) {
    if (busy) stream.start();
    wait_for_inputs();
  }
  if (!busy) return;
  const int first = kRoutes ? lone_slot(routing, early) : plan.offsets[e], count = kRoutes ? 1 : plan.counts[e];
  const int s_first = passes.first_pass * pass_tokens;
  for (int s0 = s_first; s0 < count; s0 += passes.pass_step * pass_tokens) {
    const int n = min(pass_tokens, count - s0);
    if (!early || s0 != s_first) stream.start();
    if constexpr (!kLoneToken)
      stage_tokens([&](int i) { return x.data + int64_t(plan.slot_token[first + s0 + i]) * x.stride; }, n, gate.cols,
                   xs, max_bits);
    float acc[4] = {};
    stream.multiply(xs, stage_stride(gate.cols), n, acc);
    if (!reduce_parts(acc, share.part, wpr) || row0 + g >= width) continue;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int token = 2 * t + i;
      if (token >= n) continue;
      const float unscale = power_of_two(-scale_exponent(max_bits[token]));
      const float gv = acc[i] * unscale, uv = acc[2 + i] * unscale;
      hidden[int64_t(first + s0 + token) * hidden_stride + row0 + g] = silu(gv) * uv;
    }
  }
}

// grid and passes as moe.cu's down_kernel; a warp's tile is 16 rows of down. The shared FFN, wider
// than a routed one, takes shared_parts rows of blocks, each of a part of its rows and with
// shared_wpr warps a tile, so that its warps have a routed warp's share of the columns.
// The plan was written two launches ahead (by the router, then came the gate_up product): it is read,
// and the block's first chunks asked for, before the wait (chained_launch.cuh). kRoutes (a lone
// token): so are the router gate's logits, and the routed blocks route the token there
// (LoneRouting) instead of reading the plan.
template <int kAhead, int kMinBlocks, bool kRoutes>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
    down_mma_kernel(const DeviceWeight* ffns, int wpr, int shared_wpr, MoePlan plan, int n_ffns, int shared_parts,
                    int pass_tokens, const float* hidden, int64_t hidden_stride, float* y, LoneRouting routing) {
  extern __shared__ uint4 shared_memory[];
  uint4* xs = shared_memory + (kRoutes ? lone_routing_groups(routing.n_experts, routing.config.top_k) : 0);
  __shared__ unsigned max_bits[kMaxPassTokens];
  const bool shared_row = int(blockIdx.y) >= int(gridDim.y) - shared_parts;
  const int tile_wpr = shared_row ? shared_wpr : wpr;
  const int64_t block_rows = int64_t(kWarps / tile_wpr) * kDownTileRows;
  if (kRoutes && !shared_row) preload_lone_bias(routing, shared_memory);
  const BlockPasses passes = kRoutes && !shared_row
                                 ? BlockPasses{route_lone_token(routing, shared_memory, false), 0, 1, 0}
                                 : block_passes(plan, n_ffns, shared_parts, block_rows);
  const int e = max(passes.expert, 0);
  const DeviceWeight& down = ffns[3 * e + 2];
  const int64_t rows = down.rows, block_row = passes.row_offset + int64_t(blockIdx.x) * block_rows;
  const WarpShare share = warp_share(tile_wpr, down.cols, kChunkCols);
  const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  const int64_t row0 = block_row + int64_t(share.tile) * kDownTileRows;
  TileStream<kAhead> stream{lane_pair(down, min(row0 + g, rows - 1), down, min(row0 + g + 8, rows - 1)), down.cols,
                            down.block_in, share.begin, share.end};
  const int first = kRoutes ? lone_slot(routing, shared_row) : __ldcg(plan.offsets + e);
  const int count = kRoutes ? 1 : __ldcg(plan.counts + e);
  const int s_first = passes.first_pass * pass_tokens;
  const bool busy = passes.expert >= 0 && block_row < rows && s_first < count;
  if (busy) stream.start();
  wait_for_inputs();
  if (!busy) return;
  for (int s0 = s_first; s0 < count; s0 += passes.pass_step * pass_tokens) {
    const int n = min(pass_tokens, count - s0);
    if (s0 != s_first) stream.start();
    stage_tokens([&](int i) { return hidden + int64_t(first + s0 + i) * hidden_stride; }, n, down.cols, xs, max_bits);
    float acc[4] = {};
    stream.multiply(xs, stage_stride(down.cols), n, acc);
    if (!reduce_parts(acc, share.part, tile_wpr)) continue;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int token = 2 * t + i;
      if (token >= n) continue;
      const float unscale = power_of_two(-scale_exponent(max_bits[token]));
      float* out = y + int64_t(first + s0 + token) * rows;
      if (row0 + g < rows) out[row0 + g] = acc[i] * unscale;
      if (row0 + g + 8 < rows) out[row0 + g + 8] = acc[2 + i] * unscale;
    }
  }
}

// LoneRouting's scratch in shared memory beside the staging, for the most experts a router takes.
constexpr size_t kMaxLoneRoutingBytes = size_t(lone_routing_groups(kMaxRoutedExperts, kMaxRoutedExperts)) * 16;

// The kernel, allowed the staging's shared memory and a lone token's routing scratch (an attribute of
// the kernel: set once).
template <typename Kernel>
Kernel allowed_staging(Kernel kernel) {
  DSV3_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(kMaxStageBytes + kMaxLoneRoutingBytes)));
  return kernel;
}

// The shared memory ahead of the staged tokens: LoneRouting's, where the blocks route.
size_t routing_bytes(const LoneRouting* routing) {
  return routing ? size_t(lone_routing_groups(routing->n_experts, routing->config.top_k)) * 16 : 0;
}

// Tokens a pass stages: B's 8 columns, as many as the batch has, as many as fit kMaxStageBytes.
int pass_tokens(int64_t n_tokens, int64_t cols) {
  const int64_t fit = int64_t(kMaxStageBytes) / (int64_t(stage_stride(cols)) * 16);
  return int(std::max<int64_t>(1, std::min<int64_t>({kMaxPassTokens, n_tokens, fit})));
}

// Warps sharing a tile's columns: the fewest that give the GPU kTargetWarps warps in all (each part
// at least two rounds of `ahead` chunks).
int tile_warps(int64_t tiles, int64_t cols, int ahead) {
  const int64_t chunks = (cols + kChunkCols - 1) / kChunkCols;
  int wpr = 1;
  while (wpr < kWarps && tiles * wpr < kTargetWarps && chunks >= 2 * wpr * ahead) wpr *= 2;
  return wpr;
}

}  // namespace

bool moe_mma_ok(const DeviceWeight& shape) {
  return shape.dtype == DType::F8_E4M3 && shape.cols % 16 == 0 && shape.block_in % kChunkCols == 0;
}

bool moe_mma_fits(int64_t cols) { return size_t(stage_stride(cols)) * 16 <= kMaxStageBytes; }

void launch_moe_gate_up_mma(const MoeFfns& ffns, int max_active, int64_t n_tokens, MoePlan plan, DeviceMatrix x,
                            float* hidden, int64_t hidden_stride, const LoneRouting* routing, cudaStream_t stream) {
  const DeviceWeight& shape = ffns.gate_shape;
  const int64_t tiles = (shape.rows + kGateTileRows - 1) / kGateTileRows;
  const int64_t shared_tiles = ffns.shared ? (ffns.max_width + kGateTileRows - 1) / kGateTileRows : 0;
  const bool lone = n_tokens == 1;
  const int wpr = tile_warps(tiles * max_active + shared_tiles, shape.cols, lone ? kLoneAhead : kAhead);
  const int64_t block_rows = kWarps / wpr * kGateTileRows, row_blocks = (shape.rows + block_rows - 1) / block_rows;
  const int shared_parts = shared_gate_up_parts(ffns, row_blocks, block_rows);
  const int tokens = pass_tokens(n_tokens, shape.cols);
  const dim3 grid(unsigned(row_blocks), unsigned(max_active + shared_parts));
  static const auto lone_kernel = allowed_staging(gate_up_mma_kernel<kLoneAhead, kLoneMinBlocks, true, false>);
  static const auto routing_kernel = allowed_staging(gate_up_mma_kernel<kLoneAhead, kLoneMinBlocks, true, true>);
  static const auto kernel = allowed_staging(gate_up_mma_kernel<kAhead, kMinBlocks, false, false>);
  DSV3_ASSERT(!routing || (lone && routing->n_experts <= kMaxRoutedExperts));
  launch_chained(routing ? routing_kernel : lone ? lone_kernel : kernel, grid, kWarps * 32,
                 routing_bytes(routing) + size_t(tokens) * stage_stride(shape.cols) * 16, stream, ffns.table, wpr, plan,
                 ffns.n_ffns, shared_parts, tokens, x, hidden, hidden_stride, routing ? *routing : LoneRouting{});
}

void launch_moe_down_mma(const MoeFfns& ffns, int max_active, int64_t n_tokens, MoePlan plan, const float* hidden,
                         int64_t hidden_stride, float* y, const LoneRouting* routing, cudaStream_t stream) {
  const DeviceWeight& shape = ffns.down_shape;
  const int64_t tiles = (shape.rows + kDownTileRows - 1) / kDownTileRows;
  // The shared FFN's down weight is the widest (n_shared_experts routed widths), its rows the hidden
  // size as every FFN's.
  const int64_t cols = ffns.shared ? std::max(shape.cols, ffns.max_width) : shape.cols;
  const int64_t shared_widths = shared_down_widths(ffns);
  const bool lone = n_tokens == 1;
  const int wpr = tile_warps(tiles * (max_active + shared_widths), shape.cols, lone ? kLoneAhead : kAhead);
  const int shared_parts = shared_down_parts(shared_widths, wpr, kWarps);
  const int shared_wpr = wpr * std::max(shared_parts, 1);
  const int64_t block_rows = kWarps / wpr * kDownTileRows;
  const int tokens = pass_tokens(n_tokens, cols);
  const dim3 grid(unsigned((shape.rows + block_rows - 1) / block_rows), unsigned(max_active + shared_parts));
  static const auto lone_kernel = allowed_staging(down_mma_kernel<kLoneAhead, kLoneMinBlocks, false>);
  static const auto routing_kernel = allowed_staging(down_mma_kernel<kLoneAhead, kLoneMinBlocks, true>);
  static const auto kernel = allowed_staging(down_mma_kernel<kAhead, kMinBlocks, false>);
  DSV3_ASSERT(!routing || (lone && routing->n_experts <= kMaxRoutedExperts));
  launch_chained(routing ? routing_kernel : lone ? lone_kernel : kernel, grid, kWarps * 32,
                 routing_bytes(routing) + size_t(tokens) * stage_stride(cols) * 16, stream,
                 ffns.table, wpr, shared_wpr, plan, ffns.n_ffns, shared_parts, tokens, hidden, hidden_stride, y,
                 routing ? *routing : LoneRouting{});
}

}  // namespace dsv3::cuda
