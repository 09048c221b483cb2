// Sums over a thread block, for kernels of any block size up to 1024 threads.
#pragma once

namespace dsv3::cuda {

// The sum of `value` over the block, handed to every thread; every thread must call it, and the
// block's shared scratch is free again when it returns.
__device__ inline float block_sum(float value) {
  __shared__ float partial[32];
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < int(blockDim.x / 32) ? partial[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
    if (lane == 0) partial[0] = value;
  }
  __syncthreads();
  const float total = partial[0];
  __syncthreads();
  return total;
}

}  // namespace dsv3::cuda
