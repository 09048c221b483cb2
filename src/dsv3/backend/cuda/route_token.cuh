// A DeepSeekMoE token's routing by one warp (REFERENCE.md, DeepSeekMoE routing; the CPU router's
// rules), for the kernels that route: the router's own launches and the router gate's last block
// (moe.cu), and a lone token's expert launches (moe_mma.cu).
#pragma once

#include <cfloat>
#include <climits>

#include "dsv3/backend/cuda/float_key.cuh"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/row_dots.cuh"

namespace dsv3::cuda {
namespace {

// The key of NaN (float_key.cuh), which is what a lane without a candidate offers.
constexpr unsigned kNoCandidate = 0u;

// The index of the warp's best (key, index): larger key, ties to the lower index (a stable sort's
// choice). Two warp-wide reductions (redux.sync), where five rounds of shuffles, each waiting on the
// last, made every choice of the routing warp wait on a chain (Nsight Compute: that warp's chain is
// 44% of the router launch's last block, bench/RESULTS.md).
__device__ inline int warp_best_index(unsigned key, int index) {
  const unsigned best = __reduce_max_sync(0xffffffffu, key);
  return int(__reduce_min_sync(0xffffffffu, key == best ? unsigned(index) : 0xffffffffu));
}

// One warp's shared memory for routing a token: every expert's score and biased choice value, and
// the groups'.
struct RouteScratch {
  float* score;
  float* choice;
  float* group_score;  // [kMaxGroups]
  bool* group_kept;    // [kMaxGroups]
};
constexpr int kMaxGroups = 64;

__host__ __device__ constexpr size_t route_scratch_bytes(int n_experts) {
  return (2 * size_t(n_experts) + kMaxGroups) * sizeof(float) + kMaxGroups;
}

// A warp's share of a block's dynamic shared memory: its scratch, 16-byte aligned.
__host__ __device__ constexpr size_t route_warp_bytes(int n_experts) { return (route_scratch_bytes(n_experts) + 15) / 16 * 16; }

// The scratch of warp `warp` in a block's dynamic shared memory.
__device__ inline RouteScratch route_scratch(char* memory, int n_experts, int warp) {
  float* score = reinterpret_cast<float*>(memory + route_warp_bytes(n_experts) * warp);
  return {score, score + n_experts, score + 2 * n_experts, reinterpret_cast<bool*>(score + 2 * n_experts + kMaxGroups)};
}

// The correction bias (a weight: chained_launch.cuh lets it be read before the wait) into the
// warp's choice values, zeros without one: route_token adds the scores to it.
__device__ inline void preload_bias(const float* bias, int n_experts, RouteScratch scratch) {
  for (int e = threadIdx.x % 32; e < n_experts; e += 32) scratch.choice[e] = bias ? bias[e] : 0.0f;
}

// One warp chooses the token's top_k experts from its router logits `row` and writes their ids (to
// memory the warp reads back: shared, or its own global) and, unless `weights` is null, their
// weights; the bias is in scratch.choice (preload_bias). The logits are read through L2: other
// blocks of the launch may have written them (ThenRoute).
__device__ inline void route_token(const float* row, int n_experts, const RouterConfig& config, RouteScratch scratch,
                                   int32_t* ids, float* weights) {
  float* score = scratch.score;
  float* choice = scratch.choice;
  float* group_score = scratch.group_score;
  bool* group_kept = scratch.group_kept;
  const int lane = threadIdx.x % 32;
  if (config.sigmoid) {
    for (int e = lane; e < n_experts; e += 32) score[e] = 1.0f / (1.0f + expf(-__ldcg(row + e)));
  } else {
    float m = -FLT_MAX;
    for (int e = lane; e < n_experts; e += 32) m = fmaxf(m, __ldcg(row + e));
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    float sum = 0.0f;
    for (int e = lane; e < n_experts; e += 32) sum += (score[e] = expf(__ldcg(row + e) - m));
    sum = warp_sum(sum);
    for (int e = lane; e < n_experts; e += 32) score[e] /= sum;
  }
  for (int e = lane; e < n_experts; e += 32) choice[e] += score[e];
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
    // A group not yet kept is a candidate whatever its score (NaN too, ranked with the lanes that
    // offer none, ahead of them by its lower index): the pick is always a group.
    for (int pick = 0; pick < config.topk_group; ++pick) {
      const bool candidate = lane < config.n_group && !group_kept[lane];
      const int best = warp_best_index(candidate ? ordered_key(group_score[lane]) : kNoCandidate,
                                       candidate ? lane : INT_MAX);
      if (lane == 0) group_kept[best] = true;
      __syncwarp();
    }
    for (int e = lane; e < n_experts; e += 32)
      if (!group_kept[e / per_group]) choice[e] = -INFINITY;
    __syncwarp();
  }

  // Every lane knows each choice and sums the chosen scores in the same order; lane k % 32 keeps
  // choice k and writes its weight at the end, where lane 0 alone stored each weight, read it back
  // and scaled it, one after another.
  // Compared as keys, every expert is a candidate, NaN included: a token whose logits are NaN (a
  // hidden state gone to NaN) still gets experts in range, where an index of none read out of bounds.
  float chosen_sum = 0.0f;
  for (int k = 0; k < config.top_k; ++k) {
    unsigned key = kNoCandidate;
    int i = INT_MAX;
    for (int e = lane; e < n_experts; e += 32) {
      const unsigned own = ordered_key(choice[e]);
      if (own > key || (own == key && e < i)) key = own, i = e;
    }
    i = warp_best_index(key, i);
    chosen_sum += score[i];
    if (lane == k % 32) ids[k] = i;
    // Taken: below every real or masked score. The lanes read choice before the reductions.
    if (lane == 0) choice[i] = -FLT_MAX * 2.0f;
    __syncwarp();
  }
  if (!weights) return;
  for (int k = lane; k < config.top_k; k += 32) {
    float w = score[ids[k]];
    if (config.normalise) w /= chosen_sum + 1e-20f;
    weights[k] = w * config.routed_scaling_factor;
  }
}

}  // namespace
}  // namespace dsv3::cuda
