// DeepSeekMoE on the GPU: the router, the sort of (token, expert) pairs by expert, the experts'
// weight-streaming products over each expert's tokens, and the weighted combine. The shared experts,
// where given, are one more FFN in the same launches (its own width), fed every token with weight 1:
// a decode step's whole FFN is three weight-streaming launches.
#include <algorithm>

#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/last_block.cuh"
#include "dsv3/backend/cuda/linear_small.cuh"
#include "dsv3/backend/cuda/moe_passes.cuh"
#include "dsv3/backend/cuda/residual_norm.cuh"
#include "dsv3/backend/cuda/route_token.cuh"
#include "dsv3/backend/cuda/row_dots.cuh"
#include "dsv3/backend/cuda/silu.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kTokens = 8;  // tokens of one expert multiplied per pass over its weight
// Rows of a lane group (row_dots.cuh): gate_up's are kGateRows rows of the gate and the same rows of
// the up projection, so that one group has both halves of its hidden values.
constexpr int kGateRows = 1, kDownRows = 2;
// Vectors of each row a lane loads before using them: a lone token (decode) needs them in flight;
// with more tokens, registers go to their sums. (8 for a lone token cost registers and was slower:
// Moonlight's decode gate_up 26 -> 30 us, down 20 -> 23 us on an H200.)
template <int kPassTokens>
constexpr int kUnroll = kPassTokens == 1 ? 4 : 2;

// One warp a token.
__global__ void route_kernel(const float* logits, int n_experts, const float* bias, RouterConfig config, int32_t* ids,
                             float* weights) {
  extern __shared__ char route_memory[];
  const RouteScratch scratch = route_scratch(route_memory, n_experts, 0);
  preload_bias(bias, n_experts, scratch);
  wait_for_inputs();
  const int64_t token = blockIdx.x;
  route_token(logits + token * n_experts, n_experts, config, scratch, ids + token * config.top_k,
              weights + token * config.top_k);
}

// Exclusive prefix sums, over the block, of the experts' counts and of their being active (count >
// 0): each thread takes a run of `per` experts, the warps scan their threads' totals by shuffles,
// then the first warp the warps' totals (blockDim a multiple of 32). Writes offset[e] and the active
// experts in order to plan.active; returns the totals of both (in every thread).
__device__ int2 scan_experts(const int* count, int n_experts, int* offset, int32_t* active) {
  __shared__ int2 warp_total[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = (blockDim.x + 31) / 32;
  const int per = (n_experts + blockDim.x - 1) / blockDim.x;
  const int e0 = min(n_experts, int(threadIdx.x) * per), e1 = min(n_experts, e0 + per);
  int2 own{0, 0};
  for (int e = e0; e < e1; ++e) own.x += count[e], own.y += count[e] > 0;
  int2 upto = own;  // inclusive, within the warp
  for (int d = 1; d < 32; d *= 2) {
    const int x = __shfl_up_sync(0xffffffffu, upto.x, d), y = __shfl_up_sync(0xffffffffu, upto.y, d);
    if (lane >= d) upto.x += x, upto.y += y;
  }
  if (lane == 31) warp_total[warp] = upto;
  __syncthreads();
  if (warp == 0) {
    int2 w = lane < n_warps ? warp_total[lane] : int2{0, 0};
    for (int d = 1; d < 32; d *= 2) {
      const int x = __shfl_up_sync(0xffffffffu, w.x, d), y = __shfl_up_sync(0xffffffffu, w.y, d);
      if (lane >= d) w.x += x, w.y += y;
    }
    if (lane < n_warps) warp_total[lane] = w;  // inclusive over the warps
  }
  __syncthreads();
  const int2 before = warp == 0 ? int2{0, 0} : warp_total[warp - 1];
  int at = before.x + upto.x - own.x, n_active = before.y + upto.y - own.y;
  for (int e = e0; e < e1; ++e) {
    offset[e] = at;
    at += count[e];
    if (count[e] > 0) active[n_active++] = e;
  }
  const int2 total = warp_total[n_warps - 1];
  __syncthreads();  // warp_total is free for the next call
  return total;
}

// The block's counting sort of the pairs by expert (MoePlan), the shared FFN's entry last. ids may
// be in shared memory.
__device__ void plan_pairs(const int32_t* ids, int64_t n_pairs, int top_k, int n_experts, MoePlan plan) {
  __shared__ int count[kMaxRoutedExperts + 1], offset[kMaxRoutedExperts + 2];
  const int64_t n_tokens = n_pairs / top_k;
  for (int e = threadIdx.x; e < n_experts; e += blockDim.x) count[e] = 0;
  __syncthreads();
  for (int64_t p = threadIdx.x; p < n_pairs; p += blockDim.x) atomicAdd(&count[ids[p]], 1);
  __syncthreads();
  const int n_ffns = n_experts + 1;
  const int2 routed = scan_experts(count, n_experts, offset, plan.active);
  if (threadIdx.x == 0) {
    count[n_experts] = int(n_tokens), offset[n_experts] = routed.x, offset[n_ffns] = routed.x + int(n_tokens);
    plan.active[routed.y] = n_experts;
    plan.active[n_ffns] = routed.y + 1;
  }
  __syncthreads();
  for (int e = threadIdx.x; e <= n_ffns; e += blockDim.x) {
    plan.offsets[e] = offset[e];
    if (e < n_ffns) plan.counts[e] = count[e], count[e] = 0;
  }
  __syncthreads();
  // Within an expert, slots follow no particular order: each slot is computed on its own.
  for (int64_t p = threadIdx.x; p < n_pairs; p += blockDim.x) {
    const int e = ids[p];
    const int slot = offset[e] + atomicAdd(&count[e], 1);
    plan.pair_slot[p] = slot;
    plan.slot_token[slot] = int32_t(p / top_k);
  }
  for (int64_t t = threadIdx.x; t < n_tokens; t += blockDim.x) plan.slot_token[n_pairs + t] = int32_t(t);
}

__global__ void plan_kernel(const int32_t* ids, int64_t n_pairs, int top_k, int n_experts, MoePlan plan) {
  wait_for_inputs();
  plan_pairs(ids, n_pairs, top_k, n_experts, plan);
}

// Decode-sized batches: one block routes tokens [0, n) of `logits`, warp t token t (the warps past n
// idle), then sorts the pairs into the plan. `memory` (dynamic shared memory) holds the n warps'
// scratch, their bias already in their choice values, then the chosen ids, which stay there for
// the sort. Every thread of the block calls it.
__device__ void route_and_plan(const float* logits, int n, int n_experts, const RouterConfig& config, char* memory,
                               int32_t* ids, float* weights, MoePlan plan) {
  const int token = int(threadIdx.x / 32), n_pairs = n * config.top_k;
  int32_t* chosen = reinterpret_cast<int32_t*>(memory + size_t(n) * route_warp_bytes(n_experts));
  if (token < n)
    route_token(logits + int64_t(token) * n_experts, n_experts, config, route_scratch(memory, n_experts, token),
                chosen + token * config.top_k, weights + token * config.top_k);
  __syncthreads();  // every token's ids are chosen
  for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) ids[p] = chosen[p];
  plan_pairs(chosen, n_pairs, config.top_k, n_experts, plan);
}

// The routing and the plan in a launch of their own, a warp a token (one launch where there were
// two, each a dependent step of the decode chain).
__global__ void route_plan_kernel(const float* logits, int n_experts, const float* bias, RouterConfig config,
                                  int32_t* ids, float* weights, MoePlan plan) {
  extern __shared__ char route_memory[];
  preload_bias(bias, n_experts, route_scratch(route_memory, n_experts, int(threadIdx.x / 32)));
  wait_for_inputs();
  route_and_plan(logits, int(blockDim.x / 32), n_experts, config, route_memory, ids, weights, plan);
}

// The routing and the plan in the router gate's launch, by the block that finishes the logits last
// (linear_small.cuh): a dependent launch fewer a MoE layer. Every block reads its share of the bias
// before its wait.
struct ThenRoute {
  static constexpr bool kLastBlock = true;
  static constexpr int kThreads = kRowWarps * 32;  // linear_small's blocks
  static constexpr int kBiasPerThread = kMaxRoutedExperts / kThreads;
  struct Early {
    float bias[kBiasPerThread];
  };
  const float* bias;
  int n_experts;
  RouterConfig config;
  int32_t* ids;
  float* weights;
  MoePlan plan;
  unsigned* blocks_done;

  __device__ Early early(int64_t) const {
    Early e;
#pragma unroll
    for (int j = 0; j < kBiasPerThread; ++j) {
      const int expert = int(threadIdx.x) + j * kThreads;
      e.bias[j] = bias && expert < n_experts ? bias[expert] : 0.0f;
    }
    return e;
  }
  __device__ void run(const Early& early, const DeviceMatrix& logits, int64_t n) const {
    extern __shared__ char route_memory[];
    for (int token = 0; token < int(n); ++token) {
      const RouteScratch scratch = route_scratch(route_memory, n_experts, token);
#pragma unroll
      for (int j = 0; j < kBiasPerThread; ++j) {
        const int expert = int(threadIdx.x) + j * kThreads;
        if (expert < n_experts) scratch.choice[expert] = early.bias[j];
      }
    }
    __syncthreads();
    route_and_plan(logits.data, int(n), n_experts, config, route_memory, ids, weights, plan);
  }
};

// A block's rows: kRowWarps / wpr warps of kRowLanes groups of kGroupRows; the first of them.
template <int kGroupRows>
__device__ inline int64_t block_rows(int wpr) {
  return int64_t(kRowWarps / wpr) * kRowLanes * kGroupRows;
}

template <int kGroupRows>
__device__ inline int64_t block_first_row(int wpr) {
  return int64_t(blockIdx.x) * block_rows<kGroupRows>(wpr);
}

template <int kGroupRows>
__device__ inline int64_t group_first_row(int wpr) {
  const int warp = threadIdx.x / 32;
  return block_first_row<kGroupRows>(wpr) + (warp / wpr) * (kRowLanes * kGroupRows) + threadIdx.x % 32 / kKLanes * kGroupRows;
}

// One pass over n_tokens (<= kPassTokens) of an FFN's slots from `first`: hidden[slot] =
// silu(gate . x[token]) * (up . x[token]) for this lane group's kGateRows rows from row0.
template <DType D, bool kVector, int kPassTokens>
__device__ __forceinline__ void gate_up_pass(const DeviceWeight& gate, const DeviceWeight& up, int64_t row0, int part,
                                             int wpr, const MoePlan& plan, int first, int n_tokens,
                                             const DeviceMatrix& x, float* hidden, int64_t hidden_stride) {
  const int64_t width = gate.rows;
  const float* x_rows[kPassTokens];
#pragma unroll
  for (int t = 0; t < kPassTokens; ++t)
    x_rows[t] = x.data + int64_t(plan.slot_token[first + min(t, n_tokens - 1)]) * x.stride;
  LaneRows<2 * kGateRows> rows;
#pragma unroll
  for (int r = 0; r < kGateRows; ++r) {
    const int64_t row = min(row0 + r, width - 1);
    rows.data[r] = gate.data, rows.scale_inv[r] = gate.scale_inv, rows.row[r] = row;
    rows.data[kGateRows + r] = up.data, rows.scale_inv[kGateRows + r] = up.scale_inv, rows.row[kGateRows + r] = row;
  }
  float acc[2 * kGateRows][kPassTokens] = {};
  if (row0 < width)
    rows_dot<D, kVector, kUnroll<kPassTokens>>(gate, rows, part, wpr, x_rows, n_tokens, acc, InputsWaited{});
  if (!reduce_rows(acc, part, wpr)) return;
#pragma unroll
  for (int r = 0; r < kGateRows; ++r)
#pragma unroll
    for (int t = 0; t < kPassTokens; ++t)
      if (stores_total<kPassTokens>(r, t) && t < n_tokens && row0 + r < width) {
        const float g = acc[r][t], u = acc[kGateRows + r][t];
        hidden[int64_t(first + t) * hidden_stride + row0 + r] = silu(g) * u;
      }
}

// grid (row blocks of a routed expert, max_active + shared_parts): block y serves passes over an
// active FFN's slots (block_passes), kTokens slots a pass; each lane group (spread over wpr warps)
// kGateRows rows of the FFN's gate and up projections. `reduce_rows` synchronises the block, so every
// block runs every pass to the end.
template <DType D, bool kVector>
__global__ void __launch_bounds__(kRowWarps * 32, 2) gate_up_kernel(const DeviceWeight* ffns, int wpr, MoePlan plan,
                                                                    int n_ffns, int shared_parts, DeviceMatrix x,
                                                                    float* hidden, int64_t hidden_stride) {
  wait_for_inputs();
  const BlockPasses passes = block_passes(plan, n_ffns, shared_parts, block_rows<kGateRows>(wpr));
  const int e = passes.expert;
  if (e < 0) return;
  const DeviceWeight& gate = ffns[3 * e];
  const DeviceWeight& up = ffns[3 * e + 1];
  const int part = int(threadIdx.x / 32) % wpr;
  const int64_t row0 = passes.row_offset + group_first_row<kGateRows>(wpr);
  if (passes.row_offset + block_first_row<kGateRows>(wpr) >= gate.rows) return;  // past this FFN's width
  const int first = plan.offsets[e], count = plan.counts[e];
  if (count == 1) {
    if (passes.first_pass == 0)
      gate_up_pass<D, kVector, 1>(gate, up, row0, part, wpr, plan, first, 1, x, hidden, hidden_stride);
    return;
  }
  for (int s0 = passes.first_pass * kTokens; s0 < count; s0 += passes.pass_step * kTokens)
    gate_up_pass<D, kVector, kTokens>(gate, up, row0, part, wpr, plan, first + s0, min(kTokens, count - s0), x, hidden,
                                      hidden_stride);
}

// One pass over n_tokens (<= kPassTokens) of an FFN's slots from `first`: y[slot] = down .
// hidden[slot] for this lane group's kDownRows rows from row0; inputs_ready() as rows_dot's.
template <DType D, bool kVector, int kPassTokens, class InputsReady>
__device__ __forceinline__ void down_pass(const DeviceWeight& down, int64_t row0, int part, int wpr, int first,
                                          int n_tokens, const float* hidden, int64_t hidden_stride, float* y,
                                          const InputsReady& inputs_ready) {
  const float* x_rows[kPassTokens];
#pragma unroll
  for (int t = 0; t < kPassTokens; ++t) x_rows[t] = hidden + int64_t(first + min(t, n_tokens - 1)) * hidden_stride;
  LaneRows<kDownRows> rows;
#pragma unroll
  for (int r = 0; r < kDownRows; ++r)
    rows.data[r] = down.data, rows.scale_inv[r] = down.scale_inv, rows.row[r] = min(row0 + r, down.rows - 1);
  float acc[kDownRows][kPassTokens] = {};
  if (row0 < down.rows)
    rows_dot<D, kVector, kUnroll<kPassTokens>>(down, rows, part, wpr, x_rows, n_tokens, acc, inputs_ready);
  else
    inputs_ready();
  if (!reduce_rows(acc, part, wpr)) return;
#pragma unroll
  for (int r = 0; r < kDownRows; ++r)
#pragma unroll
    for (int t = 0; t < kPassTokens; ++t)
      if (stores_total<kPassTokens>(r, t) && t < n_tokens && row0 + r < down.rows)
        y[int64_t(first + t) * down.rows + row0 + r] = acc[r][t];
}

// The shared FFN takes shared_parts rows of blocks, each of a part of its rows, its lane groups'
// rows over shared_wpr warps (shared_down_parts). The plan was written two launches ahead (by the
// router, then came the gate_up product): it is read, and each lane's first weight chunk asked for,
// before the wait (chained_launch.cuh).
template <DType D, bool kVector>
__global__ void __launch_bounds__(kRowWarps * 32, 2)
    down_kernel(const DeviceWeight* ffns, int wpr, int shared_wpr, MoePlan plan, int n_ffns, int shared_parts,
                const float* hidden, int64_t hidden_stride, float* y) {
  const int tile_wpr = int(blockIdx.y) >= int(gridDim.y) - shared_parts ? shared_wpr : wpr;
  const BlockPasses passes = block_passes(plan, n_ffns, shared_parts, block_rows<kDownRows>(tile_wpr));
  const int e = max(passes.expert, 0);
  const DeviceWeight& down = ffns[3 * e + 2];
  const int part = int(threadIdx.x / 32) % tile_wpr;
  const int64_t row0 = passes.row_offset + group_first_row<kDownRows>(tile_wpr);
  const int first = __ldcg(plan.offsets + e), count = __ldcg(plan.counts + e);
  bool waited = false;
  const auto inputs_ready = [&waited] {
    if (!waited) wait_for_inputs(), waited = true;
  };
  if (passes.expert >= 0 && count == 1) {
    if (passes.first_pass == 0)
      down_pass<D, kVector, 1>(down, row0, part, tile_wpr, first, 1, hidden, hidden_stride, y, inputs_ready);
  } else if (passes.expert >= 0) {
    for (int s0 = passes.first_pass * kTokens; s0 < count; s0 += passes.pass_step * kTokens)
      down_pass<D, kVector, kTokens>(down, row0, part, tile_wpr, first + s0, min(kTokens, count - s0), hidden,
                                     hidden_stride, y, inputs_ready);
  }
  inputs_ready();  // blocks without a pass wait too
}

struct GateUpKernels {
  template <DType D, bool kVector>
  static auto get() { return gate_up_kernel<D, kVector>; }
};

struct DownKernels {
  template <DType D, bool kVector>
  static auto get() { return down_kernel<D, kVector>; }
};

// grid (tokens, column blocks of kNormThreads): one output element a thread, its top_k loads
// independent; the shared FFN's slot of token t, where there is one, is shared_first_slot + t. With
// kThenNorm, the last block to finish does `then` with out as the FFN's output (last_block.cuh): the
// residual add and the next sublayer's norm in the FFN's last launch.
template <bool kThenNorm>
__global__ void __launch_bounds__(kNormThreads)
    combine_kernel(const float* y, const float* weights, MoePlan plan, int top_k, int64_t shared_first_slot,
                   DeviceMatrix out, DeviceResidualNorm then, unsigned* blocks_done) {
  const LastBlockNormWeights w(then.weight, kThenNorm ? out.cols : 0);
  wait_for_inputs();
  const int64_t t = blockIdx.x, c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c < out.cols) {
    float sum = 0.0f;
    for (int k = 0; k < top_k; ++k)
      sum += weights[t * top_k + k] * y[int64_t(plan.pair_slot[t * top_k + k]) * out.cols + c];
    if (shared_first_slot >= 0) sum += y[(shared_first_slot + t) * out.cols + c];
    out.data[t * out.stride + c] = sum;
  }
  if constexpr (kThenNorm)
    if (last_block_done(blocks_done)) last_block_add_rmsnorm(then, w, out.data, out.stride, out.rows);
}

// combine_kernel's grid for `out`.
dim3 combine_grid(DeviceMatrix out) {
  return dim3(unsigned(out.rows), unsigned((out.cols + kNormThreads - 1) / kNormThreads));
}

// The warps' scratch and the chosen ids of a route_plan_kernel block.
size_t route_plan_scratch_bytes(int64_t n, int n_experts, int top_k) {
  return size_t(n) * route_warp_bytes(n_experts) + size_t(n * top_k) * sizeof(int32_t);
}

}  // namespace

void launch_moe_route(const float* logits, int64_t n, int n_experts, const float* bias, RouterConfig config,
                      int32_t* ids, float* weights, cudaStream_t stream) {
  if (n > 0)
    launch_chained(route_kernel, unsigned(n), 32, route_scratch_bytes(n_experts), stream, logits, n_experts, bias, config,
                   ids, weights);
}

void launch_moe_plan(const int32_t* ids, int64_t n_pairs, int top_k, int n_experts, MoePlan plan, cudaStream_t stream) {
  launch_chained(plan_kernel, 1, 1024, 0, stream, ids, n_pairs, top_k, n_experts, plan);
}

// One warp a token in a block, the routing scratch of all of them and the sort's counters in the
// default 48 KB of shared memory.
bool moe_route_plan_fits(int64_t n, int n_experts, int top_k) {
  constexpr size_t kSortBytes = (2 * size_t(kMaxRoutedExperts) + 3) * sizeof(int) + 32 * sizeof(int2);
  return n >= 1 && n <= 32 && route_plan_scratch_bytes(n, n_experts, top_k) + kSortBytes <= 48 * 1024;
}

// Tokens up to which the router gate's last block routes (a warp a token, 8 warps a block): one
// block's choice against a launch of its own.
constexpr int64_t kRoutedInGateTokens = 1;

bool moe_gate_route_plan_ok(int64_t n, int n_experts, int top_k) {
  return n <= kRoutedInGateTokens && moe_route_plan_fits(n, n_experts, top_k);
}

void launch_moe_gate_route_plan(const DeviceWeight& gate, DeviceMatrix x, float* logits, const float* bias,
                                RouterConfig config, int32_t* ids, float* weights, MoePlan plan, unsigned* blocks_done,
                                cudaStream_t stream) {
  static_assert(kRoutedInGateTokens == 1);  // kTokens 1
  const int n_experts = int(gate.rows);
  const DeviceMatrix logits_m{logits, x.rows, n_experts, n_experts};
  const ThenRoute route{bias, n_experts, config, ids, weights, plan, blocks_done};
  launch_tokens<1>(gate, x, logits_m, nullptr, DeviceMatrix{}, route,
                   route_plan_scratch_bytes(x.rows, n_experts, config.top_k), stream);
}

void launch_moe_route_plan(const float* logits, int64_t n, int n_experts, const float* bias, RouterConfig config,
                           int32_t* ids, float* weights, MoePlan plan, cudaStream_t stream) {
  const size_t scratch = route_plan_scratch_bytes(n, n_experts, config.top_k);
  launch_chained(route_plan_kernel, 1, unsigned(32 * n), scratch, stream, logits, n_experts, bias, config, ids, weights,
                 plan);
}

size_t moe_plan_bytes(int64_t n_tokens, int top_k, int n_experts) {
  const int64_t n_ffns = n_experts + 1, n_pairs = n_tokens * top_k;
  return size_t(3 * n_ffns + 2 + 2 * n_pairs + n_tokens) * sizeof(int32_t);
}

MoePlan moe_plan_view(void* memory, int64_t n_tokens, int top_k, int n_experts) {
  const int64_t n_ffns = n_experts + 1, n_pairs = n_tokens * top_k, n_slots = n_pairs + n_tokens;
  auto* base = static_cast<int32_t*>(memory);
  return {base, base + n_ffns, base + 2 * n_ffns + 1, base + 2 * n_ffns + 1 + n_slots,
          base + 2 * n_ffns + 1 + n_slots + n_pairs};
}

void launch_moe_gate_up(const MoeFfns& ffns, int max_active, MoePlan plan, DeviceMatrix x, bool vector, float* hidden,
                        int64_t hidden_stride, cudaStream_t stream) {
  constexpr int kWarpRows = kRowLanes * kGateRows;
  const DeviceWeight& shape = ffns.gate_shape;
  const int wpr = warps_per_tile((shape.rows + kWarpRows - 1) / kWarpRows * max_active, row_vectors(shape),
                                 kKLanes * kUnroll<1>);
  const int64_t block_rows = kRowWarps / wpr * kWarpRows, row_blocks = (shape.rows + block_rows - 1) / block_rows;
  const int shared_parts = shared_gate_up_parts(ffns, row_blocks, block_rows);
  const dim3 grid(unsigned(row_blocks), unsigned(max_active + shared_parts));
  launch_chained(kernel_for<GateUpKernels>(shape.dtype, vector), grid, kRowWarps * 32, 0, stream, ffns.table, wpr, plan,
                 ffns.n_ffns, shared_parts, x, hidden, hidden_stride);
}

void launch_moe_down(const MoeFfns& ffns, int max_active, MoePlan plan, const float* hidden, int64_t hidden_stride,
                     bool vector, float* y, cudaStream_t stream) {
  constexpr int kWarpRows = kRowLanes * kDownRows;
  const DeviceWeight& shape = ffns.down_shape;
  const int64_t shared_widths = shared_down_widths(ffns);
  const int wpr = warps_per_tile((shape.rows + kWarpRows - 1) / kWarpRows * max_active, row_vectors(shape),
                                 kKLanes * kUnroll<1>);
  const int shared_parts = shared_down_parts(shared_widths, wpr, kRowWarps);
  const int64_t block_rows = kRowWarps / wpr * kWarpRows;
  const dim3 grid(unsigned((shape.rows + block_rows - 1) / block_rows), unsigned(max_active + shared_parts));
  launch_chained(kernel_for<DownKernels>(shape.dtype, vector), grid, kRowWarps * 32, 0, stream, ffns.table, wpr,
                 wpr * std::max(shared_parts, 1), plan, ffns.n_ffns, shared_parts, hidden, hidden_stride, y);
}

void launch_moe_combine(const float* y, const float* weights, MoePlan plan, int top_k, int64_t shared_first_slot,
                        DeviceMatrix out, cudaStream_t stream) {
  if (out.rows > 0 && out.cols > 0)
    launch_chained(combine_kernel<false>, combine_grid(out), kNormThreads, 0, stream, y, weights, plan, top_k,
                   shared_first_slot, out, DeviceResidualNorm{}, nullptr);
}

void launch_moe_combine_add_rmsnorm(const float* y, const float* weights, MoePlan plan, int top_k,
                                    int64_t shared_first_slot, DeviceMatrix out, const DeviceResidualNorm& then,
                                    unsigned* blocks_done, cudaStream_t stream) {
  if (out.cols > 0)
    launch_chained(combine_kernel<true>, combine_grid(out), kNormThreads, 0, stream, y, weights, plan, top_k,
                   shared_first_slot, out, then, blocks_done);
}

}  // namespace dsv3::cuda
