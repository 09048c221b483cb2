// The experts' products of decode-sized FP8 batches on tensor cores (moe_mma.cu): the same work as
// moe.cu's streaming gate_up and down launches, for the weights it takes.
#pragma once

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// Whether the tensor-core kernels read weights of this shape (FP8 with 128-column multiples as
// blocks, 16-byte rows) and stage rows of `cols` activations.
bool moe_mma_ok(const DeviceWeight& shape);
bool moe_mma_fits(int64_t cols);

// A lone token routed in its expert launches' blocks, from the router gate's logits, instead of in
// the gate's last block: each routed block of gate_up (after its wait) and of down (before it, the
// logits being two launches ahead) chooses the token's experts for itself, and takes the expert of
// its row of blocks, choice y for row y, its slot y (a lone token's plan is the pairs in order; the
// shared FFN's slot is top_k). Block (0, 0) of gate_up writes the weights and that plan's pair_slot
// for the combine. (The gate's last block held a chain of stores, a fence, a count, the routing and
// a counting sort while the other SMs idled: bench/RESULTS.md.)
struct LoneRouting {
  const float* logits = nullptr;  // [1, n_experts]
  const float* bias = nullptr;    // the correction bias, or null
  int n_experts = 0;
  RouterConfig config;
  float* weights = nullptr;  // [top_k]
  int32_t* pair_slot = nullptr;  // [top_k]
};

// As launch_moe_gate_up and launch_moe_down (kernels.h), for batches of n_tokens. With `routing`
// (one token, max_active its top_k), the blocks route it themselves and `plan` is not read.
void launch_moe_gate_up_mma(const MoeFfns& ffns, int max_active, int64_t n_tokens, MoePlan plan, DeviceMatrix x,
                            float* hidden, int64_t hidden_stride, const LoneRouting* routing, cudaStream_t stream);
void launch_moe_down_mma(const MoeFfns& ffns, int max_active, int64_t n_tokens, MoePlan plan, const float* hidden,
                         int64_t hidden_stride, float* y, const LoneRouting* routing, cudaStream_t stream);

}  // namespace dsv3::cuda
