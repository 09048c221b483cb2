// MLA decode's absorb and unabsorb for batches of many items (mla_batch_products.cu): per head a
// tiled float32 product over the items. mla_decode.cu's kernels for them are built for the few items
// of a small decode batch (a block's 8 items, a warp's weight row applied to every item in turn).
#pragma once

#include <cuda_runtime.h>

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// Batches of more items than this take the tiled products. (Taken from 17 items, they ran Moonlight's
// batch-32 decode 1% slower on an H200, 4% launched chained; batches of 128 and 256 gained alike.)
constexpr int kMaxFewItems = 64;

// q_latent[item, h, c] = sum_d q_nope[item, h, d] W_uk[h][d][c], as launch_mla_absorb.
void launch_mla_absorb_tiled(MlaDims dims, DeviceMatrix q, const MlaItem* items, int n_items,
                             const DeviceWeight& kv_b_proj, float* q_latent, cudaStream_t stream);
// out[q_row][h * v_dim + r] = W_uv[h][r] . o_latent[item][h], as launch_mla_unabsorb.
void launch_mla_unabsorb_tiled(MlaDims dims, const float* o_latent, const MlaItem* items, int n_items,
                               const DeviceWeight& kv_b_proj, DeviceMatrix out, cudaStream_t stream);

}  // namespace dsv3::cuda
