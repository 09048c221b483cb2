// MLA decode attention on tensor cores (mla_decode_mma.cu): what mla_decode.cu asks of it.
#pragma once

#include <cuda_runtime.h>

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// Heads a block takes: the M of the m16n8k16 products; cache rows a step.
constexpr int kMmaHeadGroup = 16, kMmaTile = 32;

// Whether the latent and rope widths suit the tensor-core kernel: latent columns in whole pairs of
// 8-column tiles for each of its 8 warps, and rows in whole 16-column steps for each half of the scores.
bool decode_on_tensor_cores(MlaDims dims);

// The kernel over grid (n_items, head groups of kMmaHeadGroup, n_splits), writing the same partial
// results as the CUDA-core kernel (mla_decode.cu), which its merge then combines, or for one split
// o_latent itself.
void launch_decode_attention_mma(MlaDims dims, DeviceMatrix q, const float* q_latent, const MlaItem* items, int n_items,
                                 const int32_t* tables, DeviceCacheLayer cache, int n_splits, float* partial,
                                 float* o_latent, cudaStream_t stream);

}  // namespace dsv3::cuda
