// Grouped products for groups of a few rows each (grouped_few.cu): what grouped_gemm.cu's
// launch_grouped_linear hands on when an expert gets a few of a decode batch's tokens.
#pragma once

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// Whether `rows` rows in n_groups groups are few a group (32 or fewer on average) and weights shaped as
// `shape` suit the kernel (BF16, or FP8 whose scale blocks are multiples of 128 both ways).
bool grouped_few_ok(const DeviceWeight& shape, int64_t rows, int n_groups);
// As launch_grouped_linear (kernels.h), for weights and rows it takes; gate_up: as
// launch_grouped_gate_up, y = silu(gate x) * (up x), the up weight next to the gate in the table.
void launch_grouped_few(const GroupedWeights& weights, const DeviceWeight& shape, const int32_t* offsets, int n_groups,
                        DeviceMatrix x, const int32_t* x_rows, DeviceMatrix y, bool gate_up, cudaStream_t stream);

// Dense products of a few rows (more than linear_small takes, up to kFewRows): y = x W^T on the
// same tiles, one group of x's rows in order, K split over blocks until sm_count SMs have blocks
// enough, which add their sums into y (zeroed first): a float32 sum in another order from run to run.
constexpr int64_t kFewRows = 64;
bool few_rows_ok(const DeviceWeight& w, DeviceMatrix x);
void launch_few_rows(const DeviceWeight& w, DeviceMatrix x, DeviceMatrix y, int sm_count, cudaStream_t stream);

}  // namespace dsv3::cuda
