// MLA prefill attention on warpgroup tensor cores (mla_prefill_wgmma.cu): the work of
// launch_mla_prefill_flash (kernels.h) for DeepSeek's head widths, which that launcher hands it.
#pragma once

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// Whether the kernel takes these head widths (qk 192, v_dim 128).
bool mla_prefill_wgmma_ok(MlaDims dims);
// Its scratch: k and v transposed in FP16.
size_t mla_prefill_wgmma_scratch_bytes(MlaDims dims, int64_t context);
// As launch_mla_prefill_flash.
void launch_mla_prefill_wgmma(MlaDims dims, DeviceMatrix q, DeviceMatrix kv, DeviceMatrix latent, int64_t start,
                              void* scratch, DeviceMatrix out, cudaStream_t stream);

}  // namespace dsv3::cuda
