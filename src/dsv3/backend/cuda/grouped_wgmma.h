// Grouped products for groups of many rows on warpgroup tensor cores (grouped_wgmma.cu): what
// grouped_gemm.cu's launch_grouped_linear hands on for a prefill batch's experts.
#pragma once

#include <cstddef>

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// x's rows as the kernel reads them, in its column order: FP16 [rows, K] in `high` with each row's
// inverse power of two in `unscale` (against FP8 weights), or two BF16 parts [rows, K] (against BF16).
struct GroupedParts {
  uint16_t* high = nullptr;
  uint16_t* low = nullptr;
  float* unscale = nullptr;
};

// Whether weights shaped as `shape` suit the kernel: K a multiple of 128; BF16, or FP8 whose scale
// blocks are 128 columns (or a multiple) wide and a multiple of 128 rows tall.
bool grouped_wgmma_ok(const DeviceWeight& shape);
// The scratch launch_grouped_wgmma takes for x's parts against weights shaped as `shape`.
size_t grouped_wgmma_scratch_bytes(const DeviceWeight& shape, DeviceMatrix x);
// As launch_grouped_linear (kernels.h), for weights it takes; with gate_up, as launch_grouped_gate_up.
void launch_grouped_wgmma(const GroupedWeights& weights, const DeviceWeight& shape, const int32_t* offsets,
                          int n_groups, DeviceMatrix x, const int32_t* x_rows, DeviceMatrix y, bool gate_up,
                          void* scratch, cudaStream_t stream);

}  // namespace dsv3::cuda
