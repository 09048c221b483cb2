// The experts' products of decode-sized FP8 batches on tensor cores (moe_mma.cu): the same work as
// moe.cu's streaming gate_up and down launches, for the weights it takes.
#pragma once

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// Whether the tensor-core kernels read weights of this shape (FP8 with 128-column multiples as
// blocks, 16-byte rows) and stage rows of `cols` activations.
bool moe_mma_ok(const DeviceWeight& shape);
bool moe_mma_fits(int64_t cols);

// As launch_moe_gate_up and launch_moe_down (kernels.h), for batches of n_tokens.
void launch_moe_gate_up_mma(const MoeFfns& ffns, int max_active, int64_t n_tokens, MoePlan plan, DeviceMatrix x,
                            float* hidden, int64_t hidden_stride, cudaStream_t stream);
void launch_moe_down_mma(const MoeFfns& ffns, int max_active, int64_t n_tokens, MoePlan plan, const float* hidden,
                         int64_t hidden_stride, float* y, cudaStream_t stream);

}  // namespace dsv3::cuda
