// Sums and maxima across threads: over a thread block (any size up to 1024 threads), and sums over a
// lane group.
#pragma once

#include <cmath>

namespace dsv3::cuda {

// `value` reduced by op (associative; `identity` its neutral value) over the block, handed to every
// thread; every thread must call it, and the block's shared scratch is free again when it returns.
template <class Op>
__device__ inline float block_reduce(float value, Op op, float identity) {
  __shared__ float partial[32];
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < int(blockDim.x / 32) ? partial[lane] : identity;
    for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
    if (lane == 0) partial[0] = value;
  }
  __syncthreads();
  const float total = partial[0];
  __syncthreads();
  return total;
}

struct Plus {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Larger {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// The sum and the largest of `value` over the block, as block_reduce.
__device__ inline float block_sum(float value) { return block_reduce(value, Plus{}, 0.0f); }
__device__ inline float block_max(float value) { return block_reduce(value, Larger{}, -INFINITY); }

// Sums kLanes values (held by each of kLanes consecutive lanes, a power of two) over those lanes, by
// halving: at each step a lane keeps half its values and trades the other half with the lane `half`
// away, so that lane l ends with the total of value l % kLanes after kLanes - 1 shuffles (a full
// butterfly of every value takes kLanes log2(kLanes)). All 32 lanes of the warp must call it; v is
// overwritten.
template <int kLanes>
__device__ __forceinline__ float lanes_sum_scatter(float (&v)[kLanes]) {
  static_assert(kLanes > 0 && kLanes <= 32 && (kLanes & (kLanes - 1)) == 0);
  const int lane = int(threadIdx.x % kLanes);
#pragma unroll
  for (int step = 1; step < kLanes; step *= 2) {
    const int half = kLanes / 2 / step;
    const bool upper = lane & half;
#pragma unroll
    for (int k = 0; k < half; ++k) {
      const float kept = upper ? v[k + half] : v[k], sent = upper ? v[k] : v[k + half];
      v[k] = kept + __shfl_xor_sync(0xffffffffu, sent, half);
    }
  }
  return v[0];
}

}  // namespace dsv3::cuda
