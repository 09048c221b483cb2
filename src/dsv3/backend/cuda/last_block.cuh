// Which block of a grid finishes last: it may then work on what every block stored (CUDA C++
// Programming Guide, "Memory Fence Functions": the sum-of-blocks example), inside the same launch
// instead of a dependent launch after it.
#pragma once

namespace dsv3::cuda {

// True in every thread of the last block of the grid to call it; every thread of every block must
// call it, once, after its stores. That block reads the others' stores through L2 (__ldcg: its L1
// may hold older lines). blocks_done counts the calls; it starts at zero and the last block sets it
// back, so one counter serves every launch of a stream (a chained kernel touches it only after its
// wait, when the launch ahead has finished).
__device__ inline bool last_block_done(unsigned* blocks_done) {
  __shared__ bool last;
  __threadfence();  // this thread's stores are visible before the block is counted
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned blocks = gridDim.x * gridDim.y * gridDim.z;
    last = atomicAdd(blocks_done, 1u) == blocks - 1;
    if (last) *blocks_done = 0;
  }
  __syncthreads();
  return last;
}

}  // namespace dsv3::cuda
