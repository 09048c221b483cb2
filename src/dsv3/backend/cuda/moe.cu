// DeepSeekMoE on the GPU: the router, the sort of (token, expert) pairs by expert, the experts'
// weight-streaming products over each expert's tokens, and the weighted combine.
#include <cfloat>

#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/row_dots.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kMaxExperts = 1024;
constexpr int kTokens = 8;  // tokens of one expert multiplied per pass over its weight

// The best (value, index) of a warp: larger value, ties to the lower index (a stable sort's choice).
__device__ void warp_best(float& value, int& index) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, value, offset);
    const int i = __shfl_xor_sync(0xffffffffu, index, offset);
    if (v > value || (v == value && i < index)) value = v, index = i;
  }
}

// One warp a token (REFERENCE.md, DeepSeekMoE routing; the CPU router's rules).
__global__ void route_kernel(const float* logits, int n_experts, const float* bias, RouterConfig config, int32_t* ids,
                             float* weights) {
  __shared__ float score[kMaxExperts], choice[kMaxExperts];
  __shared__ float group_score[64];
  __shared__ bool group_kept[64];
  const int lane = threadIdx.x, token = blockIdx.x;
  const float* row = logits + int64_t(token) * n_experts;

  if (config.sigmoid) {
    for (int e = lane; e < n_experts; e += 32) score[e] = 1.0f / (1.0f + expf(-row[e]));
  } else {
    float m = -FLT_MAX;
    for (int e = lane; e < n_experts; e += 32) m = fmaxf(m, row[e]);
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    float sum = 0.0f;
    for (int e = lane; e < n_experts; e += 32) sum += (score[e] = expf(row[e] - m));
    sum = warp_sum(sum);
    for (int e = lane; e < n_experts; e += 32) score[e] /= sum;
  }
  for (int e = lane; e < n_experts; e += 32) choice[e] = score[e] + (bias ? bias[e] : 0.0f);
  __syncwarp();

  if (config.group_rule != 0 && config.n_group > 1) {
    const int per_group = n_experts / config.n_group;
    if (lane < config.n_group) {
      float best = -FLT_MAX, second = -FLT_MAX;
      for (int e = lane * per_group; e < (lane + 1) * per_group; ++e) {
        if (choice[e] > best) second = best, best = choice[e];
        else if (choice[e] > second) second = choice[e];
      }
      group_score[lane] = config.group_rule == 1 ? best + (per_group > 1 ? second : 0.0f) : best;
      group_kept[lane] = false;
    }
    __syncwarp();
    for (int pick = 0; pick < config.topk_group; ++pick) {
      float v = lane < config.n_group && !group_kept[lane] ? group_score[lane] : -FLT_MAX;
      int i = lane < config.n_group && !group_kept[lane] ? lane : INT_MAX;
      warp_best(v, i);
      if (lane == 0) group_kept[i] = true;
      __syncwarp();
    }
    for (int e = lane; e < n_experts; e += 32)
      if (!group_kept[e / per_group]) choice[e] = -INFINITY;
    __syncwarp();
  }

  float chosen_sum = 0.0f;
  for (int k = 0; k < config.top_k; ++k) {
    float v = -INFINITY;
    int i = INT_MAX;
    for (int e = lane; e < n_experts; e += 32)
      if (choice[e] > v || (choice[e] == v && e < i)) v = choice[e], i = e;
    warp_best(v, i);
    if (lane == 0) {
      ids[int64_t(token) * config.top_k + k] = i;
      weights[int64_t(token) * config.top_k + k] = score[i];
      chosen_sum += score[i];
      choice[i] = -FLT_MAX * 2.0f;  // taken: below every real or masked score
    }
    __syncwarp();
  }
  if (lane == 0)
    for (int k = 0; k < config.top_k; ++k) {
      float& w = weights[int64_t(token) * config.top_k + k];
      if (config.normalise) w /= chosen_sum + 1e-20f;
      w *= config.routed_scaling_factor;
    }
}

// One block: counting sort of the pairs by expert.
__global__ void plan_kernel(const int32_t* ids, int64_t n_pairs, int top_k, int n_experts, MoePlan plan) {
  __shared__ int count[kMaxExperts], offset[kMaxExperts + 1];
  for (int e = threadIdx.x; e < n_experts; e += blockDim.x) count[e] = 0;
  __syncthreads();
  for (int64_t p = threadIdx.x; p < n_pairs; p += blockDim.x) atomicAdd(&count[ids[p]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    int total = 0, n_active = 0;
    for (int e = 0; e < n_experts; ++e) {
      offset[e] = total;
      total += count[e];
      if (count[e] > 0) plan.active[n_active++] = e;
    }
    offset[n_experts] = total;
    plan.active[n_experts] = n_active;
  }
  __syncthreads();
  for (int e = threadIdx.x; e <= n_experts; e += blockDim.x) {
    plan.offsets[e] = offset[e];
    if (e < n_experts) plan.counts[e] = count[e], count[e] = 0;
  }
  __syncthreads();
  // Within an expert, slots follow no particular order: each slot is computed on its own.
  for (int64_t p = threadIdx.x; p < n_pairs; p += blockDim.x) {
    const int e = ids[p];
    const int slot = offset[e] + atomicAdd(&count[e], 1);
    plan.pair_slot[p] = slot;
    plan.slot_token[slot] = int32_t(p / top_k);
  }
}

// grid (row blocks, max_active): block y serves the y-th active expert (if there is one), each warp
// (or warp group of wpr) one row of its gate and up projections, over its slots kTokens at a time.
__global__ void __launch_bounds__(kRowWarps * 32) gate_up_kernel(const DeviceWeight* experts, int wpr, MoePlan plan,
                                                                 int n_experts, DeviceMatrix x, bool vector,
                                                                 float* hidden, int64_t width) {
  if (int(blockIdx.y) >= plan.active[n_experts]) return;
  const int e = plan.active[blockIdx.y];
  const DeviceWeight gate = experts[3 * e], up = experts[3 * e + 1];
  const int warp = threadIdx.x / 32, part = warp % wpr;
  const int64_t row = int64_t(blockIdx.x) * (kRowWarps / wpr) + warp / wpr;
  const int first = plan.offsets[e], count = plan.counts[e];
  for (int s0 = 0; s0 < count; s0 += kTokens) {
    const int n_tokens = min(kTokens, count - s0);
    const float* x_rows[kTokens];
#pragma unroll
    for (int t = 0; t < kTokens; ++t) x_rows[t] = x.data + int64_t(plan.slot_token[first + s0 + min(t, n_tokens - 1)]) * x.stride;
    float g[kTokens] = {}, u[kTokens] = {};
    if (row < width) {
      row_dots<kTokens>(gate, vector, row, part, wpr, x_rows, n_tokens, g);
      row_dots<kTokens>(up, vector, row, part, wpr, x_rows, n_tokens, u);
    }
    float g_total, u_total;
    const bool writes = reduce_row<kTokens>(g, part, wpr, n_tokens, g_total);
    __syncthreads();
    reduce_row<kTokens>(u, part, wpr, n_tokens, u_total);
    if (writes && row < width)
      hidden[int64_t(first + s0 + threadIdx.x % 32) * width + row] = g_total / (1.0f + expf(-g_total)) * u_total;
    __syncthreads();
  }
}

__global__ void __launch_bounds__(kRowWarps * 32) down_kernel(const DeviceWeight* experts, int wpr, MoePlan plan,
                                                              int n_experts, const float* hidden, bool vector,
                                                              float* y) {
  if (int(blockIdx.y) >= plan.active[n_experts]) return;
  const int e = plan.active[blockIdx.y];
  const DeviceWeight down = experts[3 * e + 2];
  const int warp = threadIdx.x / 32, part = warp % wpr;
  const int64_t row = int64_t(blockIdx.x) * (kRowWarps / wpr) + warp / wpr;
  const int first = plan.offsets[e], count = plan.counts[e];
  for (int s0 = 0; s0 < count; s0 += kTokens) {
    const int n_tokens = min(kTokens, count - s0);
    const float* x_rows[kTokens];
#pragma unroll
    for (int t = 0; t < kTokens; ++t) x_rows[t] = hidden + int64_t(first + s0 + min(t, n_tokens - 1)) * down.cols;
    float acc[kTokens] = {};
    if (row < down.rows) row_dots<kTokens>(down, vector, row, part, wpr, x_rows, n_tokens, acc);
    float total;
    if (reduce_row<kTokens>(acc, part, wpr, n_tokens, total) && row < down.rows)
      y[int64_t(first + s0 + threadIdx.x % 32) * down.rows + row] = total;
    __syncthreads();
  }
}

__global__ void combine_kernel(const float* y, const float* weights, MoePlan plan, int top_k, DeviceMatrix out) {
  const int64_t t = blockIdx.x;
  float* o = out.data + t * out.stride;
  for (int64_t c = threadIdx.x; c < out.cols; c += blockDim.x) {
    float sum = 0.0f;
    for (int k = 0; k < top_k; ++k)
      sum += weights[t * top_k + k] * y[int64_t(plan.pair_slot[t * top_k + k]) * out.cols + c];
    o[c] = sum;
  }
}

}  // namespace

void launch_moe_route(const float* logits, int64_t n, int n_experts, const float* bias, RouterConfig config,
                      int32_t* ids, float* weights, cudaStream_t stream) {
  if (n > 0) route_kernel<<<unsigned(n), 32, 0, stream>>>(logits, n_experts, bias, config, ids, weights);
}

void launch_moe_plan(const int32_t* ids, int64_t n_pairs, int top_k, int n_experts, MoePlan plan, cudaStream_t stream) {
  plan_kernel<<<1, 1024, 0, stream>>>(ids, n_pairs, top_k, n_experts, plan);
}

void launch_moe_gate_up(const DeviceWeight* experts, const DeviceWeight& shape, int n_experts, int max_active,
                        MoePlan plan, DeviceMatrix x, bool vector, float* hidden, cudaStream_t stream) {
  const int wpr = warps_per_row(shape, max_active);
  const dim3 grid(unsigned((shape.rows + kRowWarps / wpr - 1) / (kRowWarps / wpr)), unsigned(max_active));
  gate_up_kernel<<<grid, kRowWarps * 32, 0, stream>>>(experts, wpr, plan, n_experts, x, vector, hidden, shape.rows);
}

void launch_moe_down(const DeviceWeight* experts, const DeviceWeight& shape, int n_experts, int max_active,
                     MoePlan plan, const float* hidden, bool vector, float* y, cudaStream_t stream) {
  const int wpr = warps_per_row(shape, max_active);
  const dim3 grid(unsigned((shape.rows + kRowWarps / wpr - 1) / (kRowWarps / wpr)), unsigned(max_active));
  down_kernel<<<grid, kRowWarps * 32, 0, stream>>>(experts, wpr, plan, n_experts, hidden, vector, y);
}

void launch_moe_combine(const float* y, const float* weights, MoePlan plan, int top_k, DeviceMatrix out,
                        cudaStream_t stream) {
  if (out.rows > 0) combine_kernel<<<unsigned(out.rows), 256, 0, stream>>>(y, weights, plan, top_k, out);
}

}  // namespace dsv3::cuda
